"""Operator faults on a real apiserver: SIGKILL mid-scale, redis-server killed and restarted.

``test_operator_scaling.py`` covers a graceful restart inside a scale-down window and a Redis
outage that comes back empty; these add the hard kill in the middle of a rate-limited scale-up
and a Redis that comes back with its data (AOF), with the Deployment's replicas sampled the
whole time: they may only ever move towards the target, never down and up again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from redis import Redis

from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import enqueue, wait_ready
from tests.support.faults import AOF_ARGS
from tests.support.kube import Kube, holds, poll, pool_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INTERVAL = 2
SLACK = 1.0
#: Two pods per 6 s: a scale-up to 10 takes ~25 s, long enough to kill the operator half way.
SLOW_UP = {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 6}]}


class ReplicaWatch:
    """Samples a Deployment's replicas on a thread (every 0.1 s) until stopped."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.samples: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(kube, namespace, name), daemon=True)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self, kube: Kube, namespace: str, name: str) -> None:
        while not self._stop.wait(0.1):
            self.samples.append(kube.replicas(namespace, name))

    def changes(self) -> list[int | None]:
        """The distinct values in order (runs collapsed): [0, 2, 4, ...]."""
        out: list[int | None] = []
        for value in self.samples:
            if not out or out[-1] != value:
                out.append(value)
        return out


def test_operator_sigkilled_mid_scale_up_resumes_without_a_flap(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"maxReplicas": 10, "workersPerPod": 1}},
        behavior={"scaleUp": SLOW_UP, "scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    kube.create_pool(namespace, pool)
    first = start_operator()
    wait_ready(kube, namespace)
    with ReplicaWatch(kube, namespace, "pantry-llm") as watch:
        enqueue(redis, "llm", 10)
        poll(lambda: (kube.replicas(namespace, "pantry-llm") or 0) >= 4, 30, "scale-up under way")
        first.kill()  # SIGKILL: no shutdown, whatever was in flight is lost
        at_kill = kube.replicas(namespace, "pantry-llm")
        assert at_kill is not None and at_kill < 10
        start_operator()
        poll(lambda: kube.replicas(namespace, "pantry-llm") == 10, 60, "the scale-up completed")
        holds(lambda: kube.replicas(namespace, "pantry-llm") == 10, 3 * INTERVAL, "held at the target")
    changes = watch.changes()
    assert changes == sorted(changes, key=lambda v: v or 0), f"replicas flapped: {changes}"
    assert changes[-1] == 10


@pytest.fixture
def aof_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(appendonly=True, extra_args=AOF_ARGS).start()
    yield server
    server.stop()


def test_redis_killed_and_restarted_with_its_data_keeps_replicas_steady(
    kube: Kube, namespace: str, aof_redis: EmbeddedRedis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        aof_redis.url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"maxReplicas": 10}},
        # No stabilization: a single poll that read "no demand" would scale down at once.
        behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 50, "periodSeconds": 15}]},
                  "scaleDown": {"stabilizationWindowSeconds": 0}},
    )  # fmt: skip
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)
    client = Redis.from_url(aof_redis.url)
    enqueue(client, "llm", 8)
    client.close()
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 4, 2 * INTERVAL + SLACK, "llm at 4")

    with ReplicaWatch(kube, namespace, "pantry-llm") as watch:
        aof_redis.kill()
        poll(
            lambda: (kube.condition(namespace, "pantry", "Fallback") or {}).get("status") == "True",
            3 * INTERVAL + 3,
            "Fallback condition",
        )
        holds(lambda: kube.replicas(namespace, "pantry-llm") == 4, 2 * INTERVAL, "replicas held without data")
        aof_redis.start()  # same port, same data dir: the queued jobs come back from the AOF
        poll(
            lambda: (kube.condition(namespace, "pantry", "Fallback") or {}).get("status") == "False",
            2 * INTERVAL + SLACK + 3,
            "Fallback cleared",
        )
        holds(lambda: kube.replicas(namespace, "pantry-llm") == 4, 3 * INTERVAL, "same demand, same replicas")
    assert watch.changes() == [4], f"replicas moved across the outage: {watch.changes()}"
    assert len(kube.events(namespace, "RedisUnreachable")) == 1
