"""The operator works with exactly the namespaced RBAC the chart grants it, and nothing more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from redis import Redis

from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import drain, enqueue, wait_ready
from tests.support.kube import KOPF_PEERING_CRD, Kube, create_peering, poll, pool_manifest
from tests.support.rbac import NAMESPACED_RULES, PEERING_RULE

pytestmark = pytest.mark.e2e

#: The operator's namespaced permissions with peering: exactly what the chart grants.
RULES: list[dict[str, Any]] = [*NAMESPACED_RULES, PEERING_RULE]


def service_account_kubeconfig(kube: Kube, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as ``operator`` in ``namespace`` (a TokenRequest token)."""
    kube.core.create_namespaced_service_account(
        namespace, {"metadata": {"name": "operator"}}, _preload_content=False
    )
    rbac = k8s.RbacAuthorizationV1Api(kube.api_client)
    rbac.create_namespaced_role(
        namespace, {"metadata": {"name": "operator"}, "rules": RULES}, _preload_content=False
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "operator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operator"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": namespace}],
        },
        _preload_content=False,
    )
    response = kube.core.create_namespaced_service_account_token(
        "operator", namespace, {"spec": {"expirationSeconds": 3600}}, _preload_content=False
    )
    token = json.loads(response.data)["status"]["token"]
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": "test", "user": "operator", "namespace": namespace}}
        ],
        "current-context": "operator",
    }
    if "certificate-authority" in cluster and not Path(cluster["certificate-authority"]).is_absolute():
        cluster["certificate-authority"] = str(kube.kubeconfig.parent / cluster["certificate-authority"])
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_operator_needs_only_its_namespaced_rbac(
    kube: Kube,
    namespace: str,
    redis_url: str,
    redis: Redis,
    start_operator: OperatorFactory,
    tmp_path: Path,
) -> None:
    kube.apply_crd(KOPF_PEERING_CRD)
    create_peering(kube, namespace, "pirate-workers")
    kube.create_secret(namespace, "redis", {"url": redis_url})
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=2,
        roles={"llm": {}, "recorder": {}},
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
    )
    pool["spec"]["redis"] = {"urlSecretRef": {"name": "redis", "key": "url"}}  # secrets: get
    kube.create_pool(namespace, pool)
    kubeconfig = service_account_kubeconfig(kube, namespace, tmp_path / "operator.kubeconfig")
    operator = start_operator(KUBECONFIG=str(kubeconfig), OPERATOR_PEERING="pirate-workers")
    wait_ready(kube, namespace)
    enqueue(redis, "llm", 4)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 2, 10, "scaled with the service account")
    assert poll(lambda: kube.events(namespace, "ScaledUp"), 10, "Events posted")
    pods = poll(
        lambda: len(kube.pods(namespace, "app.kubernetes.io/component=llm")) == 2, 20, "the ReplicaSet's pods"
    )
    assert pods
    drain(redis, "llm")  # scale-in: the pods get their deletion cost first (pods: list, patch)
    poll(lambda: kube.replicas(namespace, "pantry-llm") == 0, 10, "scaled in")
    kube.patch_pool(namespace, "pantry", {"spec": {"roles": {"recorder": None}}})
    poll(
        lambda: set(kube.deployments(namespace)) == {"pantry-llm"}, 10, "a removed role's Deployment deleted"
    )
    log = operator.log_text()
    assert "Forbidden" not in log and "403" not in log, log[-3000:]
    peering = kube.custom.get_namespaced_custom_object(
        "kopf.dev", "v1", namespace, "kopfpeerings", "pirate-workers", _preload_content=False
    )
    assert json.loads(peering.data).get("status"), "the operator keeps its peering keep-alive"
