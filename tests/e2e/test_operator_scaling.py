"""Scaling on a real apiserver: demand, provider quota, Redis outages, restarts, custom roles.

No kubelet runs here: the jobs stay queued, which is exactly the demand the tests control.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from pirate_worker.services.provider_state import BackoffPolicy, ProviderStateStore
from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import FAST_UP, drain, enqueue, status_role, wait_ready
from tests.support.kube import Kube, holds, poll, pool_manifest

pytestmark = pytest.mark.e2e

INTERVAL = 2
#: Test-side slack on top of the operator's own latency bound (our polling, API round trips).
SLACK = 1.0


def test_llm_demand_scales_up_within_two_intervals_and_drains_back_to_min(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"minReplicas": 1, "maxReplicas": 30, "workersPerPod": 2}},
        behavior={"scaleUp": FAST_UP, "scaleDown": {"stabilizationWindowSeconds": 6}},
    )
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 1, 10, "llm at minReplicas")

    enqueue(redis, "llm", 40)
    started = time.monotonic()
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 20, 2 * INTERVAL + SLACK, "llm at 40 / 2 = 20")
    reaction = time.monotonic() - started
    llm = poll(
        lambda: (
            status_role(kube, namespace, "pantry", "llm").get("queued") == 40
            and status_role(kube, namespace, "pantry", "llm")
        ),
        5,
        "status",
    )
    assert llm["desiredReplicas"] == 20
    assert "demand 40 / target 2 per pod → 20" in llm["reason"]
    assert len(kube.events(namespace, "ScaledUp")) == 1
    print(f"reaction: {reaction:.2f}s")

    drain(redis, "llm")
    drained = time.monotonic()
    holds(lambda: kube.replicas(namespace, "pantry-llm") == 20, 4.0, "scale-down stabilization")
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 1, 6 + 2 * INTERVAL + SLACK, "llm back to min")
    assert time.monotonic() - drained >= 6 - 0.5
    poll(lambda: len(kube.events(namespace, "ScaledDown")) == 1, 5, "one ScaledDown Event")
    assert len(kube.events(namespace, "ScaledUp")) == 1


def test_quota_block_holds_llm_probes_at_retry_time_and_recovers_after_a_success(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        provider={"name": "anthropic", "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"}},
        roles={"llm": {"maxReplicas": 10}, "reconciler": {"maxReplicas": 5}, "recorder": {"maxReplicas": 2}},
        quota={"replicasWhenBlocked": 0, "probeReplicas": 1},
        behavior={"scaleUp": FAST_UP},
    )
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)
    state = ProviderStateStore(redis, "anthropic", BackoffPolicy())
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    # decide() prepares a quota-blocked role its default 10 s pod start + one polling interval early.
    prepare_at = retry_at - timedelta(seconds=10 + INTERVAL)
    state.record_quota_exceeded("rate_limit_error: 429", datetime.now(UTC), retry_at=retry_at)
    assert redis.exists("claude:quota:status")
    enqueue(redis, "llm", 10)
    enqueue(redis, "reconciler", 4)
    enqueue(redis, "recorder", 2)

    poll(
        lambda: kube.replicas(namespace, "pantry-reconciler") == 4,
        INTERVAL + SLACK + 1,
        "reconciler follows demand",
    )
    poll(
        lambda: kube.replicas(namespace, "pantry-recorder") == 2, INTERVAL + SLACK, "recorder follows demand"
    )
    assert kube.replicas(namespace, "pantry-llm") == 0
    blocked = poll(lambda: kube.condition(namespace, "pantry", "ProviderBlocked"), 5, "ProviderBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "QuotaExceeded")
    assert poll(lambda: kube.events(namespace, "ProviderQuotaExceeded"), 5, "ProviderQuotaExceeded Event")
    assert (kube.get_pool(namespace, "pantry") or {})["status"]["provider"]["state"] == "quota_exceeded"
    assert status_role(kube, namespace, "pantry", "llm").get("gateClosedSince")  # kept in status
    holds(
        lambda: kube.replicas(namespace, "pantry-llm") == 0,
        max(0.0, (prepare_at - datetime.now(UTC)).total_seconds() - 0.5),
        "llm held at replicasWhenBlocked until the prepare window",
    )

    poll(
        lambda: kube.replicas(namespace, "pantry-llm") == 5,
        max(0.0, (prepare_at - datetime.now(UTC)).total_seconds()) + INTERVAL + SLACK,
        "the whole target (10 / 2 = 5) prepared before retry_at",
    )
    assert datetime.now(UTC) < retry_at
    poll(
        lambda: "preparing 5 for the retry time" in status_role(kube, namespace, "pantry", "llm")["reason"],
        5,
        "status reason: preparing",
    )
    time.sleep(max(0.0, (retry_at - datetime.now(UTC)).total_seconds()))
    poll(
        lambda: (kube.condition(namespace, "pantry", "ProviderBlocked") or {}).get("reason") == "Probing",
        5,
        "ProviderBlocked: Probing",
    )
    holds(
        lambda: kube.replicas(namespace, "pantry-llm") == 5, 2 * INTERVAL, "probing keeps the prepared pods"
    )

    state.record_success(datetime.now(UTC))  # deletes the state keys, sets claude:last:check
    assert redis.exists("claude:last:check")
    poll(
        lambda: (kube.condition(namespace, "pantry", "ProviderBlocked") or {}).get("reason") == "ProviderOK",
        5,
        "ProviderBlocked: False / ProviderOK",
    )
    assert (kube.condition(namespace, "pantry", "ProviderBlocked") or {}).get("status") == "False"
    assert poll(lambda: kube.events(namespace, "ProviderRecovered"), 5, "ProviderRecovered Event")
    llm = poll(
        lambda: (
            status_role(kube, namespace, "pantry", "llm").get("gateReopenedAt")
            and status_role(kube, namespace, "pantry", "llm")
        ),
        5,
        "gateReopenedAt in status",
    )
    assert "gateClosedSince" not in llm
    assert kube.replicas(namespace, "pantry-llm") == 5


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    yield server
    server.stop()


def test_redis_outage_holds_replicas_with_fallback_and_recovers(
    kube: Kube, namespace: str, own_redis: EmbeddedRedis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        own_redis.url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"maxReplicas": 10}},
        behavior={"scaleUp": FAST_UP, "scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)
    client = Redis.from_url(own_redis.url)
    enqueue(client, "llm", 8)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 4, 2 * INTERVAL + SLACK, "llm at 4")

    port = own_redis.port
    own_redis.stop()
    fallback = poll(
        lambda: (
            (kube.condition(namespace, "pantry", "Fallback") or {}).get("status") == "True"
            and kube.condition(namespace, "pantry", "Fallback")
        ),
        3 * INTERVAL + 3,
        "Fallback condition",
    )
    assert fallback["reason"] == "RedisUnreachable"
    assert (kube.condition(namespace, "pantry", "RedisReachable") or {}).get("status") == "False"
    assert kube.events(namespace, "RedisUnreachable")
    holds(lambda: kube.replicas(namespace, "pantry-llm") == 4, 3 * INTERVAL, "replicas held without data")
    assert len(kube.events(namespace, "RedisUnreachable")) == 1

    restarted = EmbeddedRedis(port=port).start()  # empty: the queued jobs are gone
    try:
        poll(
            lambda: (kube.condition(namespace, "pantry", "Fallback") or {}).get("status") == "False",
            2 * INTERVAL + SLACK + 3,
            "Fallback cleared",
        )
        assert poll(lambda: kube.events(namespace, "RedisReachable"), 5, "RedisReachable Event")
        poll(
            lambda: kube.replicas(namespace, "pantry-llm") == 0, 2 * INTERVAL + SLACK, "normal scaling again"
        )
    finally:
        restarted.stop()


def test_an_operator_restart_changes_no_replicas(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    window = 16
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"maxReplicas": 10}, "reconciler": {}},
        behavior={"scaleUp": FAST_UP, "scaleDown": {"stabilizationWindowSeconds": window}},
    )
    kube.create_pool(namespace, pool)
    first = start_operator()
    wait_ready(kube, namespace)
    enqueue(redis, "llm", 8)
    enqueue(redis, "reconciler", 2)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 4, 2 * INTERVAL + SLACK, "llm at 4")
    poll(lambda: kube.replicas(namespace, "pantry-reconciler") == 2, 2 * INTERVAL + SLACK, "reconciler at 2")
    drain(redis, "llm")  # the llm role is now inside its scale-down window, held at 4 by memory alone
    drained = time.monotonic()
    time_to_restart = 4.0
    holds(lambda: kube.replicas(namespace, "pantry-llm") == 4, time_to_restart, "held by the window")
    before = {name: d["metadata"]["generation"] for name, d in kube.deployments(namespace).items()}
    events_before = len(kube.events(namespace))
    assert first.stop() == 0

    second = start_operator()
    holds(lambda: kube.replicas(namespace, "pantry-llm") == 4, 3 * INTERVAL, "no change after the restart")
    assert kube.replicas(namespace, "pantry-reconciler") == 2
    after = {name: d["metadata"]["generation"] for name, d in kube.deployments(namespace).items()}
    assert after == before  # no spec write, no scale write
    assert len(kube.events(namespace)) == events_before
    # the window, remembered in status, still ends on time
    poll(
        lambda: kube.replicas(namespace, "pantry-llm") == 0,
        window + 2 * INTERVAL + SLACK,
        "scale-down after the window",
    )
    assert time.monotonic() - drained >= window - 1
    assert second.healthy()


def test_a_custom_role_on_the_default_queue_scales_with_its_demand(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        roles={"batch": {"queues": ["default"], "maxReplicas": 3}},
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)
    deployment = kube.deployments(namespace)["pantry-batch"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--queues", "default"]
    enqueue(redis, "default", 2)
    poll(lambda: kube.replicas(namespace, "pantry-batch") == 2, 2 * INTERVAL + SLACK, "batch at 2")
    enqueue(redis, "default", 5)
    poll(lambda: kube.replicas(namespace, "pantry-batch") == 3, 2 * INTERVAL + SLACK, "batch capped at max 3")
    drain(redis, "default")
    poll(lambda: kube.replicas(namespace, "pantry-batch") == 0, 2 * INTERVAL + SLACK, "batch back to 0")
