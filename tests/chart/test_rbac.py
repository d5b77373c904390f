"""Least privilege, asked of the real apiserver's RBAC authorizer with SubjectAccessReviews.

The chart is installed with helm; then, for the operator's ServiceAccount, every permission the
operator contract needs must be allowed and everything around it denied: listing Secrets, other
namespaces in namespaced mode, nodes, CRDs, creating or deleting pools.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.chart.conftest import CHART_DIR, RELEASE

pytestmark = pytest.mark.e2e

SERVICE_ACCOUNT = f"{RELEASE}-pirate-workers-operator"


@dataclass(frozen=True)
class Access:
    """One request: verb on group/resource[/subresource], in a namespace (None: cluster scope)."""

    verb: str
    group: str
    resource: str
    subresource: str = ""

    def __str__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.resource}{sub}.{self.group or 'core'}"


def accesses(group: str, resource: str, verbs: str, subresource: str = "") -> list[Access]:
    return [Access(verb, group, resource, subresource) for verb in verbs.split()]


#: What the operator contract needs in every namespace it watches.
NEEDED = [
    *accesses("pirateradio.dev", "pirateworkerpools", "get list watch patch"),
    *accesses("pirateradio.dev", "pirateworkerpools", "get patch", subresource="status"),
    *accesses("apps", "deployments", "get list watch create patch delete"),
    *accesses("apps", "deployments", "get patch", subresource="scale"),
    *accesses("", "pods", "get list watch patch"),
    *accesses("", "events", "create patch"),
    *accesses("events.k8s.io", "events", "create patch"),
    Access("get", "", "secrets"),
]
#: Never, in any namespace.
FORBIDDEN_IN_NAMESPACE = [
    *accesses("", "secrets", "list watch create update patch delete"),
    *accesses("pirateradio.dev", "pirateworkerpools", "create update delete deletecollection"),
    *accesses("apps", "deployments", "update deletecollection"),
    *accesses("", "pods", "create delete deletecollection"),
    Access("create", "", "pods", "exec"),
    Access("get", "", "configmaps"),
    Access("create", "", "serviceaccounts", "token"),
    Access("create", "rbac.authorization.k8s.io", "roles"),
    Access("create", "rbac.authorization.k8s.io", "rolebindings"),
    *accesses("apps", "statefulsets", "get create patch"),
]
FORBIDDEN_CLUSTER = [
    *accesses("", "nodes", "get list watch patch"),
    *accesses("apiextensions.k8s.io", "customresourcedefinitions", "create patch delete"),
    Access("create", "", "namespaces"),
    Access("create", "rbac.authorization.k8s.io", "clusterroles"),
    Access("create", "rbac.authorization.k8s.io", "clusterrolebindings"),
]
PEERING = accesses("kopf.dev", "kopfpeerings", "get list watch patch")
CLUSTER_PEERING = accesses("kopf.dev", "clusterkopfpeerings", "get list watch patch")
NAMESPACES = accesses("", "namespaces", "list watch")


class Authorizer:
    """SubjectAccessReviews for one ServiceAccount, as the apiserver authorizes its requests."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self._client = client
        self._api = client.AuthorizationV1Api(api_client)
        self.user = f"system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}"
        self.groups = [
            "system:serviceaccounts",
            f"system:serviceaccounts:{namespace}",
            "system:authenticated",
        ]

    def allowed(self, access: Access, namespace: str | None) -> bool:
        c = self._client
        review = c.V1SubjectAccessReview(
            spec=c.V1SubjectAccessReviewSpec(
                user=self.user,
                groups=self.groups,
                resource_attributes=c.V1ResourceAttributes(
                    namespace=namespace,
                    verb=access.verb,
                    group=access.group,
                    resource=access.resource,
                    subresource=access.subresource or None,
                ),
            )
        )
        return bool(self._api.create_subject_access_review(review).status.allowed)

    def denied_of(self, wanted: list[Access], namespace: str | None) -> list[str]:
        return [f"{a} in {namespace or '<cluster>'}" for a in wanted if not self.allowed(a, namespace)]

    def allowed_of(self, unwanted: list[Access], namespace: str | None) -> list[str]:
        return [f"{a} in {namespace or '<cluster>'}" for a in unwanted if self.allowed(a, namespace)]


@dataclass
class Installed:
    namespace: str
    authorizer: Authorizer


@pytest.fixture(scope="module")
def install(kube: Any, kubeconfig: Any) -> Iterator[Any]:
    """install(values, extra_namespaces=0) → Installed; releases and namespaces are removed after."""
    import helm_python
    from kubernetes import client

    core = client.CoreV1Api(kube)
    cleanups: list[tuple[helm_python.Config, list[str]]] = []

    def _namespace(prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        return name

    def _install(values: dict[str, Any], watched: list[str] | None = None) -> Installed:
        namespace = _namespace("rbac")
        config = helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace)
        cleanups.append((config, [namespace, *(watched or [])]))
        config.install(CHART_DIR, RELEASE, values, namespace=namespace, timeout=120)
        return Installed(namespace, Authorizer(kube, namespace))

    _install.namespace = _namespace  # type: ignore[attr-defined]
    yield _install
    for config, namespaces in cleanups:
        config.uninstall(RELEASE, timeout=120, ignore_not_found=True)
        config.close()
        for name in namespaces:
            core.delete_namespace(name)


NO_POOL = {"pool": {"enabled": False}, "redis": {"bundled": {"enabled": False}}}


def test_namespaced_mode_allows_exactly_the_contract_in_its_namespace(install: Any) -> None:
    installed = install(NO_POOL)
    authorizer, namespace = installed.authorizer, installed.namespace

    assert authorizer.denied_of(NEEDED, namespace) == []
    assert authorizer.allowed_of(FORBIDDEN_IN_NAMESPACE + PEERING, namespace) == []
    assert authorizer.allowed_of(FORBIDDEN_CLUSTER + NAMESPACES + CLUSTER_PEERING, None) == []


def test_namespaced_mode_grants_nothing_in_other_namespaces(install: Any) -> None:
    installed = install(NO_POOL)
    other = install.namespace("other")

    for namespace in (other, "kube-system", "default"):
        assert installed.authorizer.allowed_of(NEEDED, namespace) == []


def test_watch_namespaces_extend_the_contract_to_exactly_those_namespaces(install: Any) -> None:
    team_a, team_b = install.namespace("team-a"), install.namespace("team-b")
    installed = install(
        {**NO_POOL, "operator": {"watchNamespaces": [team_a, team_b]}}, watched=[team_a, team_b]
    )
    authorizer = installed.authorizer

    for namespace in (team_a, team_b):
        assert authorizer.denied_of(NEEDED, namespace) == []
        assert authorizer.allowed_of(FORBIDDEN_IN_NAMESPACE, namespace) == []
    # The release namespace is not watched unless listed.
    assert authorizer.allowed_of(NEEDED, installed.namespace) == []


def test_peering_adds_only_kopf_peerings(install: Any) -> None:
    installed = install({**NO_POOL, "operator": {"peering": {"enabled": True}}})

    assert installed.authorizer.denied_of(NEEDED + PEERING, installed.namespace) == []
    assert installed.authorizer.allowed_of(CLUSTER_PEERING + NAMESPACES, None) == []


def test_cluster_wide_mode_allows_the_contract_everywhere_and_still_no_more(install: Any) -> None:
    installed = install(
        {**NO_POOL, "rbac": {"clusterWide": True}, "operator": {"peering": {"enabled": True}}}
    )
    authorizer = installed.authorizer

    for namespace in (installed.namespace, "default", "any-namespace"):
        assert authorizer.denied_of(NEEDED + PEERING, namespace) == []
        assert authorizer.allowed_of(FORBIDDEN_IN_NAMESPACE, namespace) == []
    assert authorizer.denied_of(NAMESPACES + CLUSTER_PEERING, None) == []
    assert authorizer.allowed_of(FORBIDDEN_CLUSTER, None) == []
    assert authorizer.allowed_of([Access("list", "", "secrets")], None) == [], (
        "no listing secrets cluster-wide"
    )
