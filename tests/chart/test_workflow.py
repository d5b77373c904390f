"""The kind workflow does what the delivery asks: both images into kind, helm install, e2e tier."""

from __future__ import annotations

from typing import Any

import yaml

from tests.chart.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "e2e-kind.yml"


def steps() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    return list(job["steps"])


def run_of(step_name: str) -> str:
    return next(step["run"] for step in steps() if step.get("name", "").startswith(step_name))


def test_builds_loads_installs_and_runs_the_e2e_tier_in_order() -> None:
    names = [step.get("name", step.get("uses", "")) for step in steps()]
    order = [
        "Build the operator and worker images",
        "Create the kind cluster",
        "Load the images into kind",
        "helm install",
        "helm test",
        "e2e tier",
    ]
    positions = [next(i for i, name in enumerate(names) if name.startswith(wanted)) for wanted in order]
    assert positions == sorted(positions)

    build = run_of("Build the operator")
    assert "-f Dockerfile.operator" in build and "-f Dockerfile.worker" in build
    load = run_of("Load the images")
    assert "kind load docker-image" in load and "$OPERATOR_IMAGE" in load and "$WORKER_IMAGE" in load
    install = run_of("helm install")
    assert "charts/pirate-workers" in install and "operator.image.pullPolicy=Never" in install
    tier = run_of("e2e tier")
    assert "KUBECONFIG=" in tier and "pytest -m e2e" in tier
