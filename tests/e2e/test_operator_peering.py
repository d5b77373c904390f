"""Two operator replicas with kopf peering: only the highest priority writes; the other takes over.

Handover after the active replica is SIGKILLed takes up to OPERATOR_PEERING_LIFETIME (its last
keep-alive must expire); after a graceful stop (SIGTERM, as in a rolling update) the active
replica withdraws from the peering on its way out and the standby resumes at once.
"""

from __future__ import annotations

import time

import pytest
from redis import Redis

from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import FAST_UP, enqueue, wait_ready
from tests.support.kube import (
    KOPF_PEERING_CRD,
    Kube,
    OperatorProcess,
    create_peering,
    holds,
    poll,
    pool_manifest,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIFETIME = 10
INTERVAL = 2


def cycles(process: OperatorProcess) -> float:
    return process.metric("pirate_operator_cycle_seconds_count") or 0.0


def active(process: OperatorProcess) -> bool:
    return (process.metric("pirate_operator_pools") or 0.0) >= 1


def test_only_one_replica_writes_and_the_standby_takes_over(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    kube.apply_crd(KOPF_PEERING_CRD)
    create_peering(kube, namespace, "pirate-workers")
    kube.create_pool(
        namespace,
        pool_manifest(
            "pantry",
            redis_url,
            pollingIntervalSeconds=INTERVAL,
            roles={"llm": {"maxReplicas": 10}},
            behavior={"scaleUp": FAST_UP},
        ),
    )
    peering = {"OPERATOR_PEERING": "pirate-workers", "OPERATOR_PEERING_LIFETIME": str(LIFETIME)}
    first = start_operator(OPERATOR_PEERING_PRIORITY="200", **peering)
    wait_ready(kube, namespace)
    enqueue(redis, "llm", 4)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 2, 3 * INTERVAL, "llm at 2")

    standby = start_operator(OPERATOR_PEERING_PRIORITY="100", **peering)
    holds(lambda: not active(standby) and cycles(standby) == 0, 3 * INTERVAL, "the standby stays idle")
    assert active(first)

    first.kill()
    killed = time.monotonic()
    enqueue(redis, "llm", 6)  # demand only the standby can act on: 10 jobs / 2 = 5
    poll(lambda: active(standby), LIFETIME + 3 * INTERVAL, "the standby resumes")
    resumed = time.monotonic() - killed
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 5, 3 * INTERVAL, "the standby scales")
    scaled = time.monotonic() - killed
    print(f"handover after SIGKILL: resumed {resumed:.1f}s, scaled {scaled:.1f}s (lifetime {LIFETIME}s)")
    assert resumed <= LIFETIME + 2 * INTERVAL + 2

    # A higher-priority replica takes over; stopped gracefully, it hands back at once.
    third = start_operator(OPERATOR_PEERING_PRIORITY="300", **peering)
    poll(lambda: active(third) and not active(standby), 3 * INTERVAL + 5, "the new top priority takes over")
    stopped = time.monotonic()
    assert third.stop() == 0
    poll(lambda: active(standby), 3 * INTERVAL + 5, "the standby resumes after a graceful stop")
    graceful = time.monotonic() - stopped
    print(f"handover after SIGTERM: {graceful:.1f}s")
    assert graceful < LIFETIME


def test_a_missing_peering_object_stops_the_operator_with_one_line(
    kube: Kube, namespace: str, start_operator: OperatorFactory
) -> None:
    kube.apply_crd(KOPF_PEERING_CRD)
    operator = start_operator(wait=False, OPERATOR_PEERING="nowhere")
    code = operator.proc.wait(timeout=60)
    assert code != 0
    last = operator.log_text().strip().splitlines()[-1]
    assert last.startswith(
        f"error: operator stopped: KopfPeering 'nowhere' in namespace {namespace} not found"
    )
