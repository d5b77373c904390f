"""Names, labels and annotations of the objects the operator owns (DESIGN §6)."""

from __future__ import annotations

from typing import Final

#: ``app.kubernetes.io/managed-by`` of every object the operator creates; also the field manager.
MANAGER: Final = "pirate-workers"
APP_NAME: Final = "pirate-worker"
POOL_LABEL: Final = "pirateradio.dev/pool"
NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
#: On the pods that mount the pool's outputs claim, so they can be kept on one node.
OUTPUTS_LABEL: Final = "pirateradio.dev/outputs"
#: Hash of the Deployment the operator last built, so an unchanged spec costs no PATCH.
SPEC_HASH_ANNOTATION: Final = "pirateradio.dev/spec-hash"
#: Honoured by the ReplicaSet controller on Kubernetes >= 1.22: lower costs are deleted first.
POD_DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"
#: Name of the worker container in every pod.
CONTAINER: Final = "worker"


def deployment_name(pool: str, role: str) -> str:
    """``<pool>-<role>``: one Deployment per role."""
    return f"{pool}-{role}"


def selector_labels(pool: str, role: str) -> dict[str, str]:
    """Labels that select a role's pods; a Deployment's selector is immutable, so never change them."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: pool, COMPONENT_LABEL: role}


def labels(pool: str, role: str) -> dict[str, str]:
    """Every label of a role's Deployment and pods."""
    return {**selector_labels(pool, role), MANAGED_BY_LABEL: MANAGER, POOL_LABEL: pool}


def pool_selector(pool: str) -> str:
    """Label selector (query string form) of every object the operator made for ``pool``."""
    return f"{POOL_LABEL}={pool},{MANAGED_BY_LABEL}={MANAGER}"


def role_selector(pool: str, role: str) -> str:
    """Label selector (query string form) of one role's pods."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(pool, role).items())
