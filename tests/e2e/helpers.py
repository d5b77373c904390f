"""Helpers shared by the e2e tests: demand in Redis, pool status reads."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.support.kube import Kube, poll

#: A scale-up policy that never limits the tests' jumps (the HPA default allows 4 pods per 15 s).
FAST_UP: dict[str, Any] = {"policies": [{"type": "Pods", "value": 50, "periodSeconds": 15}]}


def enqueue(redis: Redis, queue: str, count: int, seconds: float = 0) -> None:
    """``count`` real RQ jobs (``time.sleep(seconds)``, JSON-serialized, enqueued by dotted path)."""
    q = Queue(queue, connection=redis, serializer=JSONSerializer)
    for _ in range(count):
        q.enqueue("time.sleep", seconds, job_timeout=60)


def drain(redis: Redis, queue: str) -> None:
    """Empty a queue (the jobs were never going to run: no kubelet)."""
    redis.delete(Queue(queue, connection=redis).key)


def status_role(kube: Kube, namespace: str, pool: str, role: str) -> dict[str, Any]:
    found = kube.get_pool(namespace, pool) or {}
    return dict((found.get("status") or {}).get("roles", {}).get(role) or {})


def wait_ready(kube: Kube, namespace: str, pool: str = "pantry") -> None:
    poll(
        lambda: (kube.condition(namespace, pool, "Ready") or {}).get("status") == "True", 30, f"{pool} Ready"
    )
