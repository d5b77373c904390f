"""Thin async functions that apply what the builders made: one API call each, run off the loop.

None of them decides anything: which replicas, which pods cost what and when to post an Event is
decided by the reconcile steps; these only perform the write and summarise the answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pirate_operator.kube.client import KubeApi
from pirate_operator.kube.deployment import creation_body, update_patch
from pirate_operator.kube.events import EventType, build_event
from pirate_operator.kube.names import POD_DELETION_COST_ANNOTATION, SPEC_HASH_ANNOTATION, role_selector
from pirate_operator.kube.pods import deletion_cost_patches
from pirate_operator.kube.views import DeploymentView, deployment_view

logger = logging.getLogger(__name__)


class Applied(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


async def ensure_deployment(
    api: KubeApi,
    desired: dict[str, Any],
    live: DeploymentView | None,
    *,
    initial_replicas: int,
) -> tuple[DeploymentView, Applied]:
    """Create the Deployment or bring its template up to date; its replicas are never touched here.

    ``initial_replicas`` is used only when creating. An unchanged spec (same hash annotation)
    costs no request.
    """
    metadata = desired["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    if live is None:
        body = creation_body(desired, initial_replicas)
        created = await asyncio.to_thread(api.create_deployment, namespace, body)
        return deployment_view(created), Applied.CREATED
    if live.spec_hash == metadata["annotations"][SPEC_HASH_ANNOTATION]:
        return live, Applied.UNCHANGED
    patched = await asyncio.to_thread(api.patch_deployment, namespace, name, update_patch(desired))
    return deployment_view(patched), Applied.UPDATED


async def delete_deployment(api: KubeApi, live: DeploymentView) -> None:
    """Delete a Deployment of a role the pool no longer has (its pods go with it)."""
    await asyncio.to_thread(api.delete_deployment, live.namespace, live.name, live.uid)


async def scale_deployment(api: KubeApi, namespace: str, name: str, replicas: int) -> tuple[int, str]:
    """Write the replica count through the scale subresource; returns (replicas, resourceVersion)."""
    scale = await asyncio.to_thread(api.patch_scale, namespace, name, replicas)
    metadata = scale.get("metadata") or {}
    spec = scale.get("spec") or {}
    return int(spec.get("replicas", replicas)), str(metadata.get("resourceVersion", ""))


async def set_pod_deletion_costs(
    api: KubeApi, namespace: str, pool: str, role: str, busy_by_pod: Mapping[str, int]
) -> dict[str, int]:
    """Annotate the role's pods with their deletion cost (busy high, idle low) before a scale-in.

    Returns the costs that were written (pods already annotated right are not patched).
    """
    pods = await asyncio.to_thread(api.list_pods, namespace, role_selector(pool, role))
    patches = deletion_cost_patches(pods, busy_by_pod)
    for pod, cost in patches.items():
        body = {"metadata": {"annotations": {POD_DELETION_COST_ANNOTATION: str(cost)}}}
        await asyncio.to_thread(api.patch_pod, namespace, pod, body)
    return patches


async def post_event(
    api: KubeApi,
    pool_metadata: Mapping[str, Any],
    kind: EventType,
    reason: str,
    message: str,
    now: datetime,
) -> None:
    """Post one Event about the pool."""
    body = build_event(pool_metadata, kind, reason, message, now)
    await asyncio.to_thread(api.create_event, str(pool_metadata.get("namespace")), body)


async def patch_pool_status(api: KubeApi, namespace: str, name: str, patch: dict[str, Any]) -> None:
    """Merge-patch the pool's status subresource."""
    await asyncio.to_thread(api.patch_pool_status, namespace, name, patch)


async def read_secret_value(api: KubeApi, namespace: str, name: str, key: str) -> str:
    """One key of one Secret (a GET, never a LIST)."""
    return await asyncio.to_thread(api.read_secret_value, namespace, name, key)


async def list_pool_deployments(api: KubeApi, namespace: str, selector: str) -> list[DeploymentView]:
    """The Deployments matching ``selector`` (used when no watch-fed view is at hand)."""
    found = await asyncio.to_thread(api.list_deployments, namespace, selector)
    return [deployment_view(item) for item in found]
