"""The provider rate-limit cap on a real apiserver: a budget hash written as the llm workers write
it caps the llm Deployment (reason, ``ProviderLimited``, Event); without it the role scales on.

No kubelet runs here: the jobs stay queued, which is exactly the demand the test controls.
"""

from __future__ import annotations

import time

import pytest
from redis import Redis

from pirate_worker.contracts import keys
from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import FAST_UP, enqueue, status_role, wait_ready
from tests.support.kube import Kube, poll, pool_manifest

pytestmark = pytest.mark.e2e

INTERVAL = 2
#: The pool's provider (``pool_manifest``'s default): its budget hash is the one the operator reads.
PROVIDER = "rules"


def _write_budget(redis: Redis) -> None:
    """60 requests/min, 1 request a call, 2 s a call: 2 calls in flight keep the provider at its limit."""
    redis.hset(
        keys.rate_budget_key(PROVIDER),
        mapping={
            "requests:limit": 60,
            "requests:level": 59,
            "requests:ts": time.time(),
            "requests:used": 1,
            "call_s": 2,
            "updated": time.time(),
        },
    )


def test_budget_caps_llm_with_reason_condition_and_event_and_its_absence_lifts_the_cap(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=INTERVAL,
        roles={"llm": {"maxReplicas": 12, "workersPerPod": 1}},
        behavior={"scaleUp": FAST_UP},
    )
    _write_budget(redis)
    kube.create_pool(namespace, pool)
    start_operator()
    wait_ready(kube, namespace)

    # 40 jobs want 12 pods (max); 2 calls in flight need 6 slots (Erlang B(6, 2) <= 2 %), 1 a pod.
    enqueue(redis, "llm", 40)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 6, 20, "llm capped at 6")
    llm = poll(
        lambda: (
            "capped at 6" in status_role(kube, namespace, "pantry", "llm").get("reason", "")
            and status_role(kube, namespace, "pantry", "llm")
        ),
        10,
        "the cap in the role's reason",
    )
    assert llm["desiredReplicas"] == 6
    assert (
        "provider limit 60 requests/min at 2.0s per call → 2.0 calls in flight, 6 slots → capped at 6"
        in llm["reason"]
    )
    limited = poll(
        lambda: (
            (kube.condition(namespace, "pantry", "ProviderLimited") or {}).get("status") == "True"
            and kube.condition(namespace, "pantry", "ProviderLimited")
        ),
        10,
        "ProviderLimited True",
    )
    assert limited["reason"] == "RateLimitCap"
    assert limited["message"] == "llm capped at 6 replicas by the provider limit 60 requests/min"
    (event,) = poll(lambda: kube.events(namespace, "ProviderLimited"), 10, "one ProviderLimited Event")
    assert event["message"] == limited["message"]

    # No budget (the workers never wrote one, or it was removed): the demand rule alone.
    redis.delete(keys.rate_budget_key(PROVIDER))
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 12, 20, "llm past the cap at max 12")
    lifted = poll(
        lambda: (
            (kube.condition(namespace, "pantry", "ProviderLimited") or {}).get("status") == "False"
            and kube.condition(namespace, "pantry", "ProviderLimited")
        ),
        10,
        "ProviderLimited False",
    )
    assert lifted["reason"] == "NoBudget"
    poll(lambda: kube.events(namespace, "ProviderLimitLifted"), 10, "a ProviderLimitLifted Event")
    assert len(kube.events(namespace, "ProviderLimited")) == 1
