"""Static checks that keep ``make images`` working offline (the built images: tests/cluster).

No image registry is reachable where the cluster tier runs: a ``# syntax=`` directive makes
BuildKit pull its frontend image and the build fails before the first step, so the Dockerfiles
must do without one. The stand-in images for the chart's bundled services get the same hadolint
rules as the production Dockerfiles, and their entrypoints must parse as POSIX sh (the base has
dash, no bash features).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.chart.conftest import ROOT
from tests.chart.test_dockerfiles import DOCKERFILES, parse

STAND_INS = {name: ROOT / "hack" / "images" / name for name in ("redis", "postgres")}
ALL_DOCKERFILES = {**DOCKERFILES, **{name: path / "Dockerfile" for name, path in STAND_INS.items()}}


@pytest.mark.parametrize("image", ALL_DOCKERFILES)
def test_no_frontend_image_to_pull(image: str) -> None:
    text = ALL_DOCKERFILES[image].read_text()

    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)


@pytest.mark.parametrize("image", DOCKERFILES)
def test_uv_downloads_come_from_one_shared_cache_mount(image: str) -> None:
    _, stages = parse(DOCKERFILES[image])
    syncs = [run for run in stages[0].all("RUN") if "uv sync" in run]

    assert syncs
    for run in syncs:
        assert "--mount=type=cache,id=pirate-workers-uv,target=/root/.cache/uv" in run
    assert "UV_CACHE_DIR=/root/.cache/uv" in " ".join(stages[0].all("ENV"))


@pytest.mark.parametrize("image", STAND_INS)
def test_stand_in_entrypoint_is_posix_sh(image: str) -> None:
    entrypoint = STAND_INS[image] / "docker-entrypoint.sh"
    shell = shutil.which("dash") or "/bin/sh"

    assert entrypoint.stat().st_mode & 0o111, "COPY keeps the mode: the script must be executable"
    assert entrypoint.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run([shell, "-n", str(entrypoint)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
