"""`helm lint` through the Helm SDK: no errors and no warnings, for the defaults and the matrix."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.chart.conftest import CHART_DIR

#: The values matrix the render tests cover; each must lint as cleanly as the defaults.
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis-url": {"redis": {"bundled": {"enabled": False}, "url": "redis://redis:6379/0"}},
    "redis-secret": {"redis": {"bundled": {"enabled": False}, "existingSecret": {"name": "r", "key": "url"}}},
    "bundled-ephemeral": {"redis": {"bundled": {"persistence": {"enabled": False}}}},
    "existing-key": {"provider": {"name": "anthropic", "existingSecret": {"name": "llm-keys", "key": "a"}}},
    "chart-key": {"provider": {"name": "openai", "apiKey": "sk-test"}},
    "cluster-wide-peering": {"rbac": {"clusterWide": True}, "operator": {"peering": {"enabled": True}}},
    "no-pool": {"pool": {"enabled": False}, "redis": {"bundled": {"enabled": False}}},
    "no-rbac": {"rbac": {"create": False}, "pool": {"uninstallCleanup": {"enabled": False}}},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True}}},
}

WARNING = 2


def problems(report: dict[str, Any]) -> list[Any]:
    """Lint messages of warning severity or worse, and errors."""
    return [m for m in report["messages"] if m["severity"] >= WARNING] + list(report["errors"])


@pytest.mark.parametrize("values", MATRIX.values(), ids=MATRIX.keys())
def test_lint_strict_has_no_errors_or_warnings(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART_DIR, values, strict=True, namespace="pirates")

    assert report["total_charts_linted"] == 1
    assert problems(report) == []


def test_lint_against_the_oldest_supported_kubernetes() -> None:
    report = helm_python.lint(CHART_DIR, strict=True, kube_version="v1.20.2")
    assert problems(report) == []


def test_lint_reports_a_bad_value_as_an_error() -> None:
    """Lint itself validates values against the schema, so the checks above can fail."""
    report = helm_python.lint(CHART_DIR, {"operator": {"logLevel": "LOUD"}}, strict=True)
    assert any("logLevel" in str(problem) for problem in problems(report))


def test_chart_metadata() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        metadata = chart.metadata
    assert metadata["apiVersion"] == "v2"
    assert metadata["kubeVersion"] == ">=1.20.0-0"
    assert metadata["appVersion"] == "0.1.0"
