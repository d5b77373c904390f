"""The operator owns one Deployment per role, built as DESIGN §6 says, and Kubernetes GCs them."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OperatorFactory
from tests.support.kube import Kube, poll, pool_manifest

pytestmark = pytest.mark.e2e


def test_a_pool_gets_three_deployments_with_the_worker_pod_spec(
    kube: Kube, namespace: str, redis_url: str, start_operator: OperatorFactory
) -> None:
    kube.create_secret(namespace, "llm-keys", {"anthropic": "sk-test"})
    pool = pool_manifest(
        "pantry",
        redis_url,
        provider={
            "name": "anthropic",
            "model": "claude-sonnet-4-20250514",
            "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"},
        },
        roles={"llm": {"minReplicas": 1, "workersPerPod": 3}, "reconciler": {}, "recorder": {}},
    )
    created = kube.create_pool(namespace, pool)
    start_operator()
    deployments = poll(
        lambda: len(kube.deployments(namespace)) == 3 and kube.deployments(namespace), 20, "3 Deployments"
    )
    assert set(deployments) == {"pantry-llm", "pantry-reconciler", "pantry-recorder"}
    llm = deployments["pantry-llm"]
    assert llm["spec"]["replicas"] == 1  # minReplicas
    assert llm["metadata"]["labels"] == {
        "app.kubernetes.io/name": "pirate-worker",
        "app.kubernetes.io/instance": "pantry",
        "app.kubernetes.io/component": "llm",
        "app.kubernetes.io/managed-by": "pirate-workers",
        "pirateradio.dev/pool": "pantry",
    }
    owner = llm["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "PirateWorkerPool",
        "pantry",
        created["metadata"]["uid"],
        True,
    )
    pod = llm["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["pirate-workers", "worker", "--role", "llm", "--count", "3"]
    env = {var["name"]: var for var in container["env"]}
    assert env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-keys", "key": "anthropic"}
    assert env["REDIS_URL"]["value"] == redis_url
    assert env["WORKER_COUNT"]["value"] == "3"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] >= 600 + 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # status and the printer columns
    status = poll(
        lambda: (kube.get_pool(namespace, "pantry") or {}).get("status", {}).get("roles"), 20, "status"
    )
    assert set(status) == {"llm", "reconciler", "recorder"}
    ready = poll(lambda: kube.condition(namespace, "pantry", "Ready"), 20, "Ready condition")
    assert ready["status"] == "True", ready
    created_events = poll(
        lambda: len(kube.events(namespace, "DeploymentCreated")) == 3, 20, "3 DeploymentCreated Events"
    )
    assert created_events


def test_editing_the_pool_updates_the_template_and_keeps_the_replicas(
    kube: Kube, namespace: str, redis_url: str, start_operator: OperatorFactory
) -> None:
    kube.create_pool(namespace, pool_manifest("pantry", redis_url, roles={"recorder": {"minReplicas": 2}}))
    start_operator()
    poll(lambda: kube.replicas(namespace, "pantry-recorder") == 2, 20, "recorder at 2")
    generation = kube.deployments(namespace)["pantry-recorder"]["metadata"]["generation"]
    kube.patch_pool(namespace, "pantry", {"spec": {"image": "ghcr.io/example/pirate-worker:0.2.0"}})

    def updated() -> bool:
        live = kube.deployments(namespace)["pantry-recorder"]
        return live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.2.0")

    poll(updated, 20, "template updated")
    live = kube.deployments(namespace)["pantry-recorder"]
    assert live["spec"]["replicas"] == 2
    assert live["metadata"]["generation"] == generation + 1  # exactly one template patch


def test_deleting_the_pool_garbage_collects_its_deployments(
    kube: Kube, namespace: str, redis_url: str, start_operator: OperatorFactory
) -> None:
    kube.create_pool(namespace, pool_manifest("pantry", redis_url))
    start_operator()
    poll(lambda: len(kube.deployments(namespace)) == 3, 20, "3 Deployments")
    poll(
        lambda: (kube.get_pool(namespace, "pantry") or {}).get("metadata", {}).get("finalizers"),
        10,
        "finalizer",
    )
    kube.delete_pool(namespace, "pantry")
    poll(
        lambda: kube.get_pool(namespace, "pantry") is None,
        20,
        "pool gone (daemon stopped, finalizer removed)",
    )
    poll(lambda: kube.deployments(namespace) == {}, 60, "Deployments garbage-collected")
