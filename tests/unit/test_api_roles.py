"""Role defaults that depend on the role's name, resolved once for every consumer."""

from __future__ import annotations

from typing import Any

import pytest

from pirate_operator.api import (
    PoolSpec,
    ScaleDownRules,
    ScaleUpRules,
    SelectPolicy,
    effective_role,
    effective_roles,
)
from pirate_worker.contracts.queues import DEFAULT_JOB_TIMEOUTS


def pool(**spec: Any) -> PoolSpec:
    return PoolSpec.model_validate(
        {
            "image": "ghcr.io/example/pirate-worker:0.1.0",
            "redis": {"url": "redis://redis:6379/0"},
            "provider": {"name": "rules"},
            **spec,
        }
    )


@pytest.mark.parametrize(
    ("name", "queues", "max_replicas", "workers_per_pod", "timeout", "gated"),
    [
        ("llm", ("llm",), 10, 2, 600, True),
        ("reconciler", ("reconciler",), 5, 1, 300, False),
        ("recorder", ("recorder",), 2, 1, 60, False),
    ],
)
def test_builtin_role_defaults(
    name: str, queues: tuple[str, ...], max_replicas: int, workers_per_pod: int, timeout: int, gated: bool
) -> None:
    role = effective_roles(pool())[name]
    assert role.queues == queues
    assert role.min_replicas == 0
    assert role.max_replicas == max_replicas
    assert role.workers_per_pod == workers_per_pod
    assert role.job_timeout_seconds == timeout == DEFAULT_JOB_TIMEOUTS[name]
    assert role.termination_grace_period_seconds == timeout + 30
    assert role.gated_by_provider is gated
    assert role.target_jobs_per_worker == 1
    assert role.activation_jobs == 0


def test_roles_omitted_means_the_three_builtins_and_listed_means_exactly_those() -> None:
    assert list(effective_roles(pool())) == ["llm", "reconciler", "recorder"]
    assert list(effective_roles(pool(roles={"llm": {}}))) == ["llm"]


@pytest.mark.parametrize(
    ("queues", "timeout"),
    [(["default"], 180), (["default", "llm"], 600), (["recorder", "reconciler"], 300)],
)
def test_custom_role_defaults(queues: list[str], timeout: int) -> None:
    role = effective_roles(pool(roles={"bulk": {"queues": queues}}))["bulk"]
    assert role.queues == tuple(queues)
    assert (role.max_replicas, role.workers_per_pod, role.gated_by_provider) == (5, 1, False)
    assert role.job_timeout_seconds == timeout
    assert role.termination_grace_period_seconds == timeout + 30


def test_explicit_values_win_over_defaults() -> None:
    spec = pool(
        roles={
            "llm": {
                "maxReplicas": 0,
                "workersPerPod": 5,
                "jobTimeoutSeconds": 120,
                "terminationGracePeriodSeconds": 400,
                "gatedByProvider": False,
            }
        }
    )
    role = effective_roles(spec)["llm"]
    assert (role.max_replicas, role.workers_per_pod, role.job_timeout_seconds) == (0, 5, 120)
    assert role.termination_grace_period_seconds == 400
    assert role.gated_by_provider is False
    assert role.capacity_per_pod == 5


def test_role_behavior_replaces_the_pool_behavior_per_direction() -> None:
    spec = pool(
        behavior={"scaleUp": {"selectPolicy": "Min"}, "scaleDown": {"stabilizationWindowSeconds": 60}},
        roles={"llm": {"behavior": {"scaleDown": {"selectPolicy": "Disabled"}}}, "recorder": {}},
    )
    llm = effective_roles(spec)["llm"]
    assert llm.behavior.scale_up == ScaleUpRules(select_policy=SelectPolicy.MIN)
    # The role's scaleDown replaces the pool's whole scaleDown: HPA defaults for what it omits.
    assert llm.behavior.scale_down == ScaleDownRules(select_policy=SelectPolicy.DISABLED)
    recorder = effective_roles(spec)["recorder"]
    assert recorder.behavior.scale_down.stabilization_window_seconds == 60


def test_pool_wide_settings_reach_every_role() -> None:
    spec = pool(pollingIntervalSeconds=5, quota={"replicasWhenBlocked": 1, "probeReplicas": 2})
    for role in effective_roles(spec).values():
        assert role.polling_interval_seconds == 5
        assert (role.quota.replicas_when_blocked, role.quota.probe_replicas) == (1, 2)


def test_custom_role_without_queues_cannot_be_resolved() -> None:
    spec = pool(roles={"bulk": {}})
    with pytest.raises(ValueError, match="unknown role 'bulk'"):
        effective_role("bulk", spec.roles["bulk"], spec)
