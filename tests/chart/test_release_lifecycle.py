"""helm install / upgrade / uninstall of the chart into a real apiserver, through the Helm SDK.

The local control plane (hack/kube) has no kubelet or scheduler, so pods stay Pending: these
tests check the objects the apiserver stores and what its controllers (ReplicaSets, garbage
collection) do with them, not running containers. The kind workflow covers running pods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pirate_operator.api import parse_pool
from tests.chart.conftest import CHART_DIR, RELEASE
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e

FULLNAME = f"{RELEASE}-pirate-workers"
OPERATOR = f"{FULLNAME}-operator"
CRD = "pirateworkerpools.pirateradio.dev"
GROUP, VERSION, PLURAL = "pirateradio.dev", "v1alpha1", "pirateworkerpools"


class Cluster:
    """The few reads these tests make, returning None for objects that do not exist."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.rbac = client.RbacAuthorizationV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.extensions = client.ApiextensionsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)

    @staticmethod
    def _get(read: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return read(*args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def deployment(self, namespace: str, name: str) -> Any:
        return self._get(self.apps.read_namespaced_deployment, name, namespace)

    def statefulset(self, namespace: str, name: str) -> Any:
        return self._get(self.apps.read_namespaced_stateful_set, name, namespace)

    def pool(self, namespace: str, name: str) -> Any:
        return self._get(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        import base64

        return base64.b64decode(self.core.read_namespaced_secret(name, namespace).data[key]).decode()

    def crd(self) -> Any:
        return self._get(self.extensions.read_custom_resource_definition, CRD)

    def release_objects(self, namespace: str) -> dict[str, list[str]]:
        """Names of everything labelled with the release, by kind."""
        selector = f"app.kubernetes.io/instance={RELEASE}"
        listings = {
            "Deployment": self.apps.list_namespaced_deployment,
            "StatefulSet": self.apps.list_namespaced_stateful_set,
            "Service": self.core.list_namespaced_service,
            "ServiceAccount": self.core.list_namespaced_service_account,
            "Secret": self.core.list_namespaced_secret,
            "PersistentVolumeClaim": self.core.list_namespaced_persistent_volume_claim,
            "NetworkPolicy": self.networking.list_namespaced_network_policy,
            "Role": self.rbac.list_namespaced_role,
            "RoleBinding": self.rbac.list_namespaced_role_binding,
        }
        found = {
            kind: sorted(item.metadata.name for item in list_(namespace, label_selector=selector).items)
            for kind, list_ in listings.items()
        }
        pools = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector
        )
        found["PirateWorkerPool"] = sorted(item["metadata"]["name"] for item in pools["items"])
        return {kind: names for kind, names in found.items() if names}


@pytest.fixture
def cluster(kube: Any) -> Cluster:
    return Cluster(kube)


def worker_deployment_as_the_operator_makes_it(pool: dict[str, Any], replicas: int) -> dict[str, Any]:
    """A `<pool>-llm` Deployment owned by the pool, standing in for the operator's own."""
    labels = {"app.kubernetes.io/name": "pirate-worker", "pirateradio.dev/pool": pool["metadata"]["name"]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{pool['metadata']['name']}-llm",
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": pool["apiVersion"],
                    "kind": pool["kind"],
                    "name": pool["metadata"]["name"],
                    "uid": pool["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "worker", "image": pool["spec"]["image"]}]},
            },
        },
    }


#: Defaults, except the pre-delete hook Job: with no kubelet (and, on kind, no operator image at
#: the default repository) it could never complete, and the uninstall would wait for it.
#: test_pool_cleanup.py runs the hook's program itself; hack/e2e-kind.sh runs the whole hook.
NO_UNINSTALL_HOOK: dict[str, Any] = {"pool": {"uninstallCleanup": {"enabled": False}}}
#: Kept by `helm uninstall` (README, "Where the data is"): the bundled services' data claims, the
#: recorder's claim and the generated credentials.
KEPT_CLAIMS = [f"data-{FULLNAME}-postgresql-0", f"data-{FULLNAME}-redis-0", f"{FULLNAME}-outputs"]
KEPT_SECRETS = [f"{FULLNAME}-postgresql-auth", f"{FULLNAME}-redis-auth"]


def test_install_upgrade_uninstall(cluster: Cluster, helm: Any, new_namespace: Any) -> None:
    namespace = new_namespace("install")
    config = helm(namespace)

    # --- install with defaults ------------------------------------------------------------------
    release = config.install(CHART_DIR, RELEASE, NO_UNINSTALL_HOOK, namespace=namespace, timeout=120)
    assert release["status"] == "deployed"
    assert "WARNINGS" in release["notes"]

    assert cluster.crd() is not None
    # The StatefulSet controller creates the data claims with the first pods (which stay Pending).
    wait_for(
        lambda: len(cluster.release_objects(namespace).get("PersistentVolumeClaim", [])) == 3,
        30,
        what="the data claims",
    )
    assert cluster.release_objects(namespace) == {
        "Deployment": [OPERATOR],
        "NetworkPolicy": [OPERATOR, f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"],
        "PersistentVolumeClaim": KEPT_CLAIMS,
        "PirateWorkerPool": [FULLNAME],
        "Role": [OPERATOR],
        "RoleBinding": [OPERATOR],
        "Secret": KEPT_SECRETS,
        "Service": [f"{OPERATOR}-metrics", f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"],
        "ServiceAccount": [OPERATOR],
        "StatefulSet": [f"{FULLNAME}-postgresql", f"{FULLNAME}-redis"],
    }
    passwords = {name: cluster.secret_value(namespace, name, "password") for name in KEPT_SECRETS}
    operator = cluster.deployment(namespace, OPERATOR)
    assert operator.spec.replicas == 1
    assert operator.spec.strategy.type == "Recreate"
    # The ReplicaSet controller accepted the pod template (ServiceAccount, security context).
    wait_for(
        lambda: cluster.deployment(namespace, OPERATOR).status.replicas == 1, 30, what="the operator's pod"
    )
    pool = cluster.pool(namespace, FULLNAME)
    assert pool["spec"]["redis"] == {"urlSecretRef": {"name": f"{FULLNAME}-redis-auth", "key": "url"}}
    assert pool["spec"]["database"] == {"urlSecretRef": {"name": f"{FULLNAME}-postgresql-auth", "key": "url"}}
    assert pool["spec"]["roles"]["llm"]["maxReplicas"] == 10
    hooks = config.get_all(RELEASE)["hooks"]
    assert [hook["name"] for hook in hooks] == [f"{OPERATOR}-test-healthz"]
    assert config.get_values(RELEASE) == NO_UNINSTALL_HOOK

    # The operator scales a worker Deployment it owns; Helm must never touch its replicas.
    cluster.apps.create_namespaced_deployment(namespace, worker_deployment_as_the_operator_makes_it(pool, 3))

    # --- upgrade with changed values ------------------------------------------------------------
    upgraded_values = {
        "operator": {"logLevel": "DEBUG"},
        "redis": {"bundled": {"enabled": False}, "url": "redis://redis.example:6379/1"},
        "pool": {
            "dryRun": True,
            "roles": {"llm": {"maxReplicas": 3}},
            "uninstallCleanup": {"enabled": False},
        },
    }
    release = config.upgrade(CHART_DIR, RELEASE, upgraded_values, namespace=namespace, timeout=120)
    assert release["revision"] == 2
    # Generated credentials are looked up, not drawn again: the data they protect stays readable.
    assert {name: cluster.secret_value(namespace, name, "password") for name in KEPT_SECRETS} == passwords
    history = str(config.get_all(RELEASE)) + str(config.get_values(RELEASE))
    assert not [name for name, password in passwords.items() if password in history]

    container = cluster.deployment(namespace, OPERATOR).spec.template.spec.containers[0]
    assert {env.name: env.value for env in container.env}["LOG_LEVEL"] == "DEBUG"
    pool = cluster.pool(namespace, FULLNAME)
    # Helm's merge patch of a custom resource leaves a removed field as null; the operator reads
    # null as unset (the pool parses, with the external URL).
    assert {key: value for key, value in pool["spec"]["redis"].items() if value is not None} == {
        "url": "redis://redis.example:6379/1"
    }
    assert parse_pool(pool).spec.redis.url == "redis://redis.example:6379/1"
    assert pool["spec"]["dryRun"] is True
    assert pool["spec"]["roles"]["llm"]["maxReplicas"] == 3
    assert cluster.statefulset(namespace, f"{FULLNAME}-redis") is None, "the bundled Redis went away"
    assert cluster.deployment(namespace, f"{FULLNAME}-llm").spec.replicas == 3, (
        "upgrade reset worker replicas"
    )

    # --- uninstall: everything of the release goes, the CRD stays -------------------------------
    config.uninstall(RELEASE, timeout=120)

    # What stays is what the README says stays: the data claims and the credentials that open them.
    stays = {"PersistentVolumeClaim": KEPT_CLAIMS, "Secret": KEPT_SECRETS}
    wait_for(
        lambda: cluster.release_objects(namespace) == stays, 30, what="the release's objects to be deleted"
    )
    assert {name: cluster.secret_value(namespace, name, "password") for name in KEPT_SECRETS} == passwords
    assert cluster.pool(namespace, FULLNAME) is None
    # The garbage collector removes what the operator created, through the pool's ownerReference.
    # On a fresh cluster it learns about the just-installed CRD only at its next discovery resync
    # (every 30 s) and retries the unresolvable owner with exponential backoff meanwhile, so this
    # takes up to about a minute here; on a cluster that already had the CRD it is immediate.
    wait_for(
        lambda: cluster.deployment(namespace, f"{FULLNAME}-llm") is None,
        150,
        what="the worker Deployment's GC",
    )
    assert cluster.crd() is not None, "helm uninstall must leave the CRD (documented)"


def test_install_with_existing_secrets_cluster_wide_and_no_pool(
    cluster: Cluster, helm: Any, new_namespace: Any
) -> None:
    namespace = new_namespace("install-cw")
    config = helm(namespace)
    values = {
        "rbac": {"clusterWide": True},
        "redis": {"bundled": {"enabled": False}},
        "database": {"bundled": {"enabled": False}},
        "pool": {"enabled": False},
        "provider": {"name": "anthropic", "apiKey": "sk-ant-install-test"},
    }
    config.install(CHART_DIR, RELEASE, values, namespace=namespace, timeout=120)

    objects = cluster.release_objects(namespace)
    assert "Role" not in objects
    assert "PirateWorkerPool" not in objects
    assert objects["Secret"] == [f"{FULLNAME}-provider"]
    cluster_role = f"{OPERATOR}-{namespace}"
    assert cluster.rbac.read_cluster_role(cluster_role).rules
    assert cluster.rbac.read_cluster_role_binding(cluster_role).subjects[0].namespace == namespace

    config.uninstall(RELEASE, timeout=120)

    wait_for(lambda: cluster.release_objects(namespace) == {}, 30, what="the release's objects to be deleted")
    names = [role.metadata.name for role in cluster.rbac.list_cluster_role().items]
    assert cluster_role not in names
