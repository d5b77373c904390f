"""The operator's RBAC contract (the rules the chart grants and the e2e ServiceAccount runs with)."""

from __future__ import annotations

from typing import Any

#: What the operator may do in a namespace it watches (the process contract), and nothing more.
NAMESPACED_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["pirateradio.dev"],
        "resources": ["pirateworkerpools"],
        "verbs": ["get", "list", "watch", "patch"],
    },
    {"apiGroups": ["pirateradio.dev"], "resources": ["pirateworkerpools/status"], "verbs": ["get", "patch"]},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]
PEERING_RULE = {
    "apiGroups": ["kopf.dev"],
    "resources": ["kopfpeerings"],
    "verbs": ["get", "list", "watch", "patch"],
}
CLUSTER_EXTRA_RULES = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}]
CLUSTER_PEERING_RULE = {
    "apiGroups": ["kopf.dev"],
    "resources": ["clusterkopfpeerings"],
    "verbs": ["get", "list", "watch", "patch"],
}
