"""Local mode: the real decide() scaling real ``pirate-workers worker`` processes on a real Redis."""

from __future__ import annotations

import os

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from pirate_operator.api.roles import effective_roles
from pirate_operator.api.spec import PoolSpec
from pirate_operator.local import LocalAutoscaler
from pirate_operator.local.processes import ProcessActuator
from tests.support.processes import ROOT, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pool(redis_url: str) -> PoolSpec:
    return PoolSpec.model_validate(
        {
            "image": "local",
            "redis": {"url": redis_url},
            "provider": {"name": "rules"},
            "pollingIntervalSeconds": 1,
            "roles": {
                "sleepers": {
                    "queues": ["default"],
                    "maxReplicas": 3,
                    "workersPerPod": 1,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 1}},
                }
            },
        }
    )


def worker_env(redis_url: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}


def test_scales_up_with_demand_and_back_to_zero(redis, redis_url, tmp_path):
    scaler = LocalAutoscaler(pool(redis_url), worker_env(redis_url), tmp_path)
    try:
        assert scaler.tick().replicas == {"sleepers": 0}
        queue = Queue("default", connection=redis, serializer=JSONSerializer)
        jobs = [queue.enqueue_call("time.sleep", args=(1,), timeout=30) for _ in range(3)]
        tick = scaler.tick()
        assert tick.replicas == {"sleepers": 3}
        assert "demand 3" in tick.reasons["sleepers"]
        wait_for(lambda: all(j.get_status() == "finished" for j in jobs), 60, what="jobs done")

        def back_to_zero() -> bool:
            scaler.tick()
            return scaler.idle()

        wait_for(back_to_zero, 30, interval=0.5, what="scale-in to zero")
    finally:
        scaler.stop()


def test_scale_in_stops_idle_processes_first(redis_url, tmp_path):
    role = effective_roles(pool(redis_url))["sleepers"]
    actuator = ProcessActuator(role, worker_env(redis_url), tmp_path)
    try:
        actuator.scale_to(3, {})
        names = [r.name for r in actuator.running]
        busy = names[1]
        actuator.scale_to(1, {busy: 1})
        assert [r.name for r in actuator.running] == [busy]
        assert sorted(r.name for r in actuator.draining) == sorted(set(names) - {busy})
        wait_for(lambda: actuator.replicas == 1 and not actuator.draining, 30, what="idle ones gone")
    finally:
        actuator.stop()
