"""Bad pools: the schema rejects what it can express; the operator reports the rest as InvalidSpec
and keeps serving the valid pools of the same namespace."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from redis import Redis

from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import enqueue, wait_ready
from tests.support.kube import Kube, holds, poll, pool_manifest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"roles": {"llm": {"workersPerPod": 0}}}, "workersPerPod"),
        ({"roles": {"llm": {"workersPerPod": 21}}}, "workersPerPod"),
        ({"provider": {"name": "gpt-5-local"}}, "provider.name"),
        ({"pollingIntervalSeconds": -1}, "pollingIntervalSeconds"),
        ({"roles": {"llm": {"minReplicas": -1}}}, "minReplicas"),
    ],
)
def test_the_schema_rejects_what_it_can_express(
    kube: Kube, namespace: str, redis_url: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        kube.create_pool(namespace, pool_manifest("bad", redis_url, **spec))
    assert refused.value.status == 422
    assert field in str(refused.value.body)


def test_semantic_problems_are_reported_and_the_valid_pool_keeps_scaling(
    kube: Kube, namespace: str, redis_url: str, redis: Redis, start_operator: OperatorFactory
) -> None:
    kube.create_pool(
        namespace, pool_manifest("inverted", redis_url, roles={"llm": {"minReplicas": 5, "maxReplicas": 2}})
    )
    kube.create_pool(namespace, pool_manifest("keyless", redis_url, provider={"name": "anthropic"}))
    kube.create_pool(
        namespace, pool_manifest("good", redis_url, pollingIntervalSeconds=2, roles={"reconciler": {}})
    )
    operator = start_operator()

    invalid = poll(
        lambda: (
            (kube.condition(namespace, "inverted", "InvalidSpec") or {}).get("status") == "True"
            and kube.condition(namespace, "inverted", "InvalidSpec")
        ),
        20,
        "InvalidSpec on the inverted pool",
    )
    assert "minReplicas 5 is above maxReplicas 2" in invalid["message"]
    keyless = poll(
        lambda: kube.condition(namespace, "keyless", "InvalidSpec"), 20, "InvalidSpec on the keyless pool"
    )
    assert "apiKeySecretRef: required for provider anthropic" in keyless["message"]
    assert (kube.condition(namespace, "inverted", "Ready") or {}).get("status") == "False"

    wait_ready(kube, namespace, "good")
    enqueue(redis, "reconciler", 3)
    poll(lambda: kube.replicas(namespace, "good-reconciler") == 3, 10, "the valid pool scales")
    assert set(kube.deployments(namespace)) == {"good-reconciler"}
    holds(lambda: len(kube.events(namespace, "InvalidSpec")) == 2, 4, "one InvalidSpec Event per bad pool")
    assert operator.proc.poll() is None

    # fixing the spec clears the condition and the pool starts working
    kube.patch_pool(namespace, "inverted", {"spec": {"roles": {"llm": {"minReplicas": 1, "maxReplicas": 2}}}})
    poll(lambda: kube.replicas(namespace, "inverted-llm") == 1, 10, "the fixed pool gets its Deployment")
    poll(
        lambda: (kube.condition(namespace, "inverted", "InvalidSpec") or {}).get("status") == "False",
        5,
        "InvalidSpec cleared",
    )
