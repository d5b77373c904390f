"""The kind e2e path does what the delivery asks: both images into kind, helm install, e2e tier.

The workflow sets up the tools and calls hack/e2e-kind.sh (also `make e2e-kind`); the script
holds the steps. Neither can run here (no Docker daemon), so their shape is pinned instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import yaml

from tests.chart.conftest import ROOT
from tests.conftest import missing_service

WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"
SCRIPT = ROOT / "hack" / "e2e-kind.sh"


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def test_workflow_creates_kind_installs_helm_and_runs_the_script() -> None:
    uses = [step.get("uses", "") for step in steps()]
    runs = [step.get("run", "") for step in steps()]

    assert any(u.startswith("helm/kind-action@") for u in uses)
    assert any(u.startswith("azure/setup-helm@") for u in uses)
    assert "uv sync --frozen --all-extras" in runs
    assert "hack/e2e-kind.sh" in runs
    assert runs.index("uv sync --frozen --all-extras") < runs.index("hack/e2e-kind.sh")


def test_script_builds_loads_installs_tests_then_runs_pytest_e2e_in_order() -> None:
    text = SCRIPT.read_text()
    commands = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    order = [
        "docker build -f Dockerfile.operator",
        "docker build -f Dockerfile.worker",
        "kind load docker-image",
        "helm upgrade --install",
        "helm test",
        '"$PYTEST" -m e2e',
        "helm uninstall",
    ]
    positions = [commands.index(step) for step in order]
    assert positions == sorted(positions)
    assert re.search(r"kind get kubeconfig .*\n\s*export KUBECONFIG=", text)
    assert "operator.image.pullPolicy=Never" in text
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text


def test_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        missing_service("shellcheck not installed (Debian package shellcheck)")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
