"""The README's main command on a clean folder: the issue's acceptance numbers, twice."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_demo(cwd: Path) -> dict[str, object]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "LLM_", "OUTPUT_", "DATABASE_"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "pirate_worker", "demo", "--json"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_demo_processes_the_examples_then_finds_them_done(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("traces"))
    first = run_demo(tmp_path)
    assert first["records"] == 56
    assert first["enqueued"] == 50
    assert first["deduplicated"] == 6
    assert first["provider_calls"] == 50
    assert first["finished"] == 50
    assert first["failed"] == 0
    assert first["reconciled"] == 50
    assert first["recorder_files"] == 50
    assert first["locations"] == 50

    outputs = tmp_path / "outputs"
    summary = json.loads((outputs / "latest" / "summary.json").read_text())
    assert summary["total_jobs"] == 50
    assert sum(summary["by_scraper"].values()) == 50
    assert not os.path.isabs(os.readlink(outputs / "latest"))
    with sqlite3.connect(outputs / "hsds.sqlite") as db:
        assert db.execute("SELECT count(*) FROM location").fetchone()[0] == 50
    assert (outputs / "timeline.png").stat().st_size > 10_000

    second = run_demo(tmp_path)
    assert second["provider_calls"] == 0
    assert second["deduplicated"] == 56
    assert second["locations"] == 50
    assert json.loads((outputs / "latest" / "summary.json").read_text())["total_jobs"] == 50
