"""Read-only summaries of live objects: what the reconcile steps need from a Deployment or Pod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pirate_operator.kube.names import COMPONENT_LABEL, POOL_LABEL, SPEC_HASH_ANNOTATION


@dataclass(frozen=True)
class DeploymentView:
    """A Deployment the operator manages, reduced to the fields a cycle reads."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    pool: str
    role: str
    #: ``spec.replicas``: what the operator (or someone) asked for.
    replicas: int
    #: ``status.readyReplicas``.
    ready_replicas: int
    spec_hash: str | None
    #: uid of the controlling owner (the pool), if any.
    owner_uid: str | None

    def newer_than(self, resource_version: str) -> bool:
        """Whether this view is at least as recent as ``resource_version``.

        resourceVersions are opaque by contract, but every apiserver backed by etcd uses the
        revision number; when either is not a number, the view is trusted.
        """
        if self.resource_version.isdigit() and resource_version.isdigit():
            return int(self.resource_version) >= int(resource_version)
        return True


def deployment_view(body: Mapping[str, Any]) -> DeploymentView:
    """Summarise a Deployment object (as listed, watched or returned by a write)."""
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    controller = next(
        (ref for ref in metadata.get("ownerReferences") or () if ref.get("controller")),
        None,
    )
    replicas = spec.get("replicas")
    return DeploymentView(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        uid=str(metadata.get("uid", "")),
        resource_version=str(metadata.get("resourceVersion", "")),
        pool=str(labels.get(POOL_LABEL, "")),
        role=str(labels.get(COMPONENT_LABEL, "")),
        replicas=int(replicas) if replicas is not None else 1,
        ready_replicas=int(status.get("readyReplicas") or 0),
        spec_hash=annotations.get(SPEC_HASH_ANNOTATION),
        owner_uid=controller.get("uid") if controller else None,
    )
