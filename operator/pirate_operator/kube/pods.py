"""Which pods a scale-in should take: ``controller.kubernetes.io/pod-deletion-cost`` per pod (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pirate_operator.kube.names import POD_DELETION_COST_ANNOTATION

#: Cost per busy worker. Idle pods (and pods not yet running a worker) cost 0, so the ReplicaSet
#: controller (Kubernetes >= 1.22) deletes them first; busier pods are kept longest.
COST_PER_BUSY_WORKER: Final = 1000


def deletion_cost(busy_workers: int) -> int:
    """The deletion cost of a pod running ``busy_workers`` jobs."""
    return busy_workers * COST_PER_BUSY_WORKER


def deletion_cost_patches(
    pods: Iterable[Mapping[str, Any]], busy_by_pod: Mapping[str, int]
) -> dict[str, int]:
    """Pods whose annotation must change, with the new cost; pods being deleted are left alone."""
    patches: dict[str, int] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionTimestamp"):
            continue
        name = str(metadata.get("name", ""))
        wanted = deletion_cost(busy_by_pod.get(name, 0))
        current = (metadata.get("annotations") or {}).get(POD_DELETION_COST_ANNOTATION)
        if current != str(wanted):
            patches[name] = wanted
    return patches
