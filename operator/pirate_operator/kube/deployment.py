"""Pure builders of a role's Deployment (DESIGN §6): manifests in, no I/O.

The built Deployment has no ``spec.replicas``: the decision engine is the only writer of the
replica count (through the scale subresource), so applying a changed pool spec can never reset
it. Only the very first create carries a count (:func:`creation_body`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from pirate_operator.api import API_VERSION, KIND, EffectiveRole, PirateWorkerPool, ProviderName
from pirate_operator.api.results import OUTPUT_DIR, WORK_DIR, mounts_outputs, writes_database
from pirate_operator.kube.names import (
    CONTAINER,
    OUTPUTS_LABEL,
    POOL_LABEL,
    SPEC_HASH_ANNOTATION,
    deployment_name,
    labels,
    selector_labels,
)

#: Port of the worker's /health, /worker-status and /metrics.
HEALTH_PORT: Final = 8080
#: The worker image's non-root user (numeric, so runAsNonRoot can be verified without /etc/passwd).
WORKER_UID: Final = 10001
#: The node a pod runs on, the topology key that keeps a ReadWriteOnce claim's pods together.
HOSTNAME_TOPOLOGY: Final = "kubernetes.io/hostname"
DEFAULT_RESOURCES: Final[dict[str, Any]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
_KEY_VARIABLES: Final[dict[ProviderName, str]] = {
    ProviderName.ANTHROPIC: "ANTHROPIC_API_KEY",
    ProviderName.CLAUDE: "ANTHROPIC_API_KEY",
    ProviderName.OPENAI: "OPENAI_API_KEY",
}
_BASE_URL_VARIABLES: Final[dict[ProviderName, str]] = {
    ProviderName.ANTHROPIC: "ANTHROPIC_BASE_URL",
    ProviderName.CLAUDE: "ANTHROPIC_BASE_URL",
    ProviderName.OPENAI: "OPENAI_BASE_URL",
    ProviderName.OLLAMA: "OLLAMA_HOST",
}


def build_deployment(pool: PirateWorkerPool, role: EffectiveRole) -> dict[str, Any]:
    """The Deployment ``<pool>-<role>`` as the operator wants it, without ``spec.replicas``.

    Its metadata carries the hash of the rest (:data:`SPEC_HASH_ANNOTATION`), so comparing one
    annotation tells whether the live object needs a patch.
    """
    name = pool.name
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(name, role.name),
            "namespace": pool.metadata.get("namespace"),
            "labels": labels(name, role.name),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": name,
                    "uid": pool.metadata.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "selector": {"matchLabels": selector_labels(name, role.name)},
            "revisionHistoryLimit": 3,
            "template": _pod_template(pool, role),
        },
    }
    body["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


def creation_body(deployment: dict[str, Any], replicas: int) -> dict[str, Any]:
    """``deployment`` with the replica count it is created with (the only time the builder sets it)."""
    return {**deployment, "spec": {**deployment["spec"], "replicas": replicas}}


def update_patch(deployment: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch bringing a live Deployment to ``deployment`` without touching its replicas.

    Lists (containers, env, volumes) are replaced whole by a merge patch, so removed entries go
    away; the selector is immutable and left out.
    """
    metadata = deployment["metadata"]
    return {
        "metadata": {
            "labels": metadata["labels"],
            "annotations": metadata["annotations"],
            "ownerReferences": metadata["ownerReferences"],
        },
        "spec": {
            "revisionHistoryLimit": deployment["spec"]["revisionHistoryLimit"],
            "template": deployment["spec"]["template"],
        },
    }


def spec_hash(body: dict[str, Any]) -> str:
    """Stable hash of a built Deployment, ignoring the hash annotation itself."""
    metadata = {key: value for key, value in body["metadata"].items() if key != "annotations"}
    canonical = json.dumps({**body, "metadata": metadata}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def worker_command(role: EffectiveRole) -> list[str]:
    """``pirate-workers worker --role R --count N`` (+ ``--queues`` for custom roles)."""
    command = ["pirate-workers", "worker", "--role", role.name, "--count", str(role.workers_per_pod)]
    if not role.builtin:
        command += ["--queues", ",".join(role.queues)]
    return command


def worker_env(pool: PirateWorkerPool, role: EffectiveRole) -> list[dict[str, Any]]:
    """The worker container's environment; the role's own ``env`` wins over the operator's."""
    spec = pool.spec
    env: list[dict[str, Any]] = []
    if spec.redis.url_secret_ref is not None:
        env.append(_secret_var("REDIS_URL", spec.redis.url_secret_ref.name, spec.redis.url_secret_ref.key))
    else:
        env.append({"name": "REDIS_URL", "value": spec.redis.url})
    provider = spec.provider
    env.append({"name": "LLM_PROVIDER", "value": provider.name.value})
    if provider.model:
        env.append({"name": "LLM_MODEL_NAME", "value": provider.model})
    calls_provider = role.gated_by_provider or role.name == "llm"
    key_variable = _KEY_VARIABLES.get(provider.name)
    if calls_provider and key_variable and provider.api_key_secret_ref is not None:
        ref = provider.api_key_secret_ref
        env.append(_secret_var(key_variable, ref.name, ref.key))
    base_url_variable = _BASE_URL_VARIABLES.get(provider.name)
    if base_url_variable and provider.base_url:
        env.append({"name": base_url_variable, "value": provider.base_url})
    env += [
        {"name": "WORKER_COUNT", "value": str(role.workers_per_pod)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "HEALTH_PORT", "value": str(HEALTH_PORT)},
        {"name": "OUTPUT_DIR", "value": OUTPUT_DIR},
    ]
    if role.consumes_llm:
        # Set even at 1, so the template says what the scaling arithmetic assumes.
        env.append({"name": "LLM_CONCURRENCY", "value": str(role.calls_per_worker)})
    database = spec.database
    if database is not None and writes_database(role):
        if database.url_secret_ref is not None:
            env.append(_secret_var("DATABASE_URL", database.url_secret_ref.name, database.url_secret_ref.key))
        else:
            env.append({"name": "DATABASE_URL", "value": database.url})
    # A variable with neither value nor valueFrom is set to the empty string by the kubelet.
    custom = [var.model_dump(by_alias=True, exclude_none=True) for var in role.env]
    overridden = {var["name"] for var in custom}
    return [var for var in env if var["name"] not in overridden] + custom


def _secret_var(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _pod_template(pool: PirateWorkerPool, role: EffectiveRole) -> dict[str, Any]:
    outputs = pool.spec.outputs if mounts_outputs(pool.spec, role) else None
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "work", "mountPath": WORK_DIR}]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}, {"name": "work", "emptyDir": {}}]
    pod_labels = labels(pool.name, role.name)
    placement: dict[str, Any] = {}
    if outputs is not None:
        claim = outputs.persistent_volume_claim.claim_name
        mounts.append({"name": "outputs", "mountPath": OUTPUT_DIR})
        volumes.append({"name": "outputs", "persistentVolumeClaim": {"claimName": claim}})
        pod_labels = {**pod_labels, OUTPUTS_LABEL: "true"}
        if outputs.keep_on_one_node:
            placement["affinity"] = _same_node_as_claim_users(pool.name)
    container = {
        "name": CONTAINER,
        "image": pool.spec.image,
        "command": worker_command(role),
        "workingDir": WORK_DIR,
        "env": worker_env(pool, role),
        "ports": [{"name": "http", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/health", "port": "http"},
            "initialDelaySeconds": 15,
            "periodSeconds": 15,
            "timeoutSeconds": 5,
            "failureThreshold": 4,
        },
        "resources": dict(role.resources) if role.resources is not None else DEFAULT_RESOURCES,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": pod_labels,
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(HEALTH_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            # Warm shutdown lets a running job finish; the grace is >= jobTimeoutSeconds + 30.
            "terminationGracePeriodSeconds": role.termination_grace_period_seconds,
            "automountServiceAccountToken": False,
            # A Service named "redis" would otherwise inject REDIS_PORT=tcp://... into the workers.
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": WORKER_UID,
                "runAsGroup": WORKER_UID,
                "fsGroup": WORKER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": volumes,
            **placement,
        },
    }


def _same_node_as_claim_users(pool: str) -> dict[str, Any]:
    """Pod affinity to the node of the pool's other pods on the outputs claim.

    A ReadWriteOnce claim can be mounted by pods of one node only. The first pod matches its own
    term, which the scheduler accepts when no other pod does, so it goes wherever it fits and the
    rest follow it.
    """
    return {
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {POOL_LABEL: pool, OUTPUTS_LABEL: "true"}},
                    "topologyKey": HOSTNAME_TOPOLOGY,
                }
            ]
        }
    }
