"""Kubernetes adapter: pure builders of the objects the operator owns, and thin functions applying them."""

from pirate_operator.kube.apply import (
    Applied,
    delete_deployment,
    ensure_deployment,
    list_pool_deployments,
    patch_pool_status,
    post_event,
    read_secret_value,
    scale_deployment,
    set_pod_deletion_costs,
)
from pirate_operator.kube.client import KubeApi, open_http_client
from pirate_operator.kube.deployment import build_deployment, creation_body, update_patch, worker_command
from pirate_operator.kube.errors import Conflict, KubeError, NotFound
from pirate_operator.kube.events import EventType, build_event
from pirate_operator.kube.names import deployment_name, labels, pool_selector, role_selector
from pirate_operator.kube.pods import deletion_cost, deletion_cost_patches
from pirate_operator.kube.views import DeploymentView, deployment_view

__all__ = [
    "Applied",
    "Conflict",
    "DeploymentView",
    "EventType",
    "KubeApi",
    "KubeError",
    "NotFound",
    "build_deployment",
    "build_event",
    "creation_body",
    "delete_deployment",
    "deletion_cost",
    "deletion_cost_patches",
    "deployment_name",
    "deployment_view",
    "ensure_deployment",
    "labels",
    "list_pool_deployments",
    "open_http_client",
    "patch_pool_status",
    "pool_selector",
    "post_event",
    "read_secret_value",
    "role_selector",
    "scale_deployment",
    "set_pod_deletion_costs",
    "update_patch",
    "worker_command",
]
