"""``spec`` of a ``PirateWorkerPool`` (DESIGN §6): what the user asks for.

Defaults that do not depend on the role are declared here and end up in the CRD, so the apiserver
fills them in. Defaults that depend on the role name (``maxReplicas``, ``workersPerPod``,
``jobTimeoutSeconds``, ``gatedByProvider``, ``terminationGracePeriodSeconds``) cannot be expressed in
a schema; they stay unset here and are resolved by :mod:`pirate_operator.api.roles`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, StrictBool

from pirate_operator.api.base import SpecModel

#: Most RQ workers one pod may run (``WORKER_COUNT``'s range).
MAX_WORKERS_PER_POD = 20
#: Most provider calls one llm worker process may hold in flight (``LLM_CONCURRENCY``).
MAX_CALLS_PER_WORKER = 256
#: The HPA's own limits for behaviour settings.
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_POLICY_PERIOD_SECONDS = 1800
#: The HPA's scale-down stabilization window, what a stock HPA (and KEDA) uses when none is set.
HPA_SCALE_DOWN_WINDOW_SECONDS = 300
#: ``podStartSeconds`` when unset: scheduling, an image already on the node, the worker's start.
DEFAULT_POD_START_SECONDS = 10
MAX_POD_START_SECONDS = 600


class SecretKeyRef(SpecModel):
    """One key of a Secret in the pool's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret, in the pool's namespace.")
    key: str = Field(min_length=1, description="Key within the Secret.")


class RedisSpec(SpecModel):
    """Where the RQ queues live. Give exactly one of url and urlSecretRef."""

    url: str | None = Field(
        default=None,
        min_length=1,
        description="Redis URL (redis://, rediss:// or unix://), e.g. redis://redis:6379/0.",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the Redis URL; use it when the URL has a password."
    )


class DatabaseSpec(SpecModel):
    """The HSDS database the reconciler writes. Give exactly one of url and urlSecretRef."""

    url: str | None = Field(
        default=None,
        min_length=1,
        description="DATABASE_URL without a password: postgresql://USER@HOST/DB, or sqlite:////PATH for a "
        "SQLite file on spec.outputs' claim (then the reconciler runs at most one replica).",
    )
    url_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding DATABASE_URL (postgresql://USER:PASSWORD@HOST/DB); the workers get "
        "it by reference, it never appears in the pool or its status.",
    )


class ClaimRef(SpecModel):
    """A PersistentVolumeClaim in the pool's namespace."""

    claim_name: str = Field(min_length=1, description="Name of the PersistentVolumeClaim.")


class OutputsSpec(SpecModel):
    """Where the recorder's files (OUTPUT_DIR) live."""

    persistent_volume_claim: ClaimRef = Field(
        description="Claim mounted at the recorder's OUTPUT_DIR (/var/lib/pirate-workers/outputs)."
    )
    keep_on_one_node: StrictBool = Field(
        default=True,
        description="Schedule every pod that mounts the claim onto one node, as a ReadWriteOnce claim needs. "
        "Set false only for ReadWriteMany storage. Default true.",
    )


class ProviderName(StrEnum):
    """LLM provider the workers call (LLM_PROVIDER)."""

    ANTHROPIC = "anthropic"
    CLAUDE = "claude"
    OPENAI = "openai"
    OLLAMA = "ollama"
    RULES = "rules"


class ProviderSpec(SpecModel):
    """LLM provider used by the llm role; its auth/quota state gates provider-gated roles."""

    name: ProviderName = Field(
        description="Provider: anthropic or claude (same API), openai (or compatible via baseUrl), "
        "ollama, or rules (offline, no model calls)."
    )
    model: str | None = Field(
        default=None, min_length=1, description="Model name (LLM_MODEL_NAME); the worker's default if unset."
    )
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the API key; required for anthropic and claude, and for openai "
        "unless baseUrl points at a keyless endpoint.",
    )
    base_url: str | None = Field(
        default=None,
        min_length=1,
        description="API base URL: ANTHROPIC_BASE_URL for anthropic/claude, OPENAI_BASE_URL for "
        "openai-compatible endpoints, OLLAMA_HOST for ollama.",
    )


class PolicyType(StrEnum):
    """Unit of a scaling policy's value."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """Which policy wins when several apply: the largest change, the smallest, or none at all."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class ScalingPolicy(SpecModel):
    """At most value pods (or percent of the replicas at the start of the period) per period."""

    type: PolicyType = Field(description="Pods (an absolute count) or Percent (of the replicas).")
    value: int = Field(ge=1, description="Pods or percent allowed to change within one period.")
    period_seconds: int = Field(
        ge=1,
        le=MAX_POLICY_PERIOD_SECONDS,
        description="Length of the period, in seconds (1-1800).",
    )


def _pods(value: int, period: int) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PODS, value=value, period_seconds=period)


def _percent(value: int, period: int) -> ScalingPolicy:
    return ScalingPolicy(type=PolicyType.PERCENT, value=value, period_seconds=period)


class ScaleUpRules(SpecModel):
    """How fast replicas may grow (the HPA's behavior.scaleUp, same defaults)."""

    stabilization_window_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_STABILIZATION_WINDOW_SECONDS,
        description="Scale up only to the lowest recommendation of this many past seconds. Default 0.",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX, description="Max (default), Min or Disabled (never scale up)."
    )
    policies: tuple[ScalingPolicy, ...] = Field(
        default=(_pods(4, 15), _percent(100, 15)),
        min_length=1,
        description="Rate limits. Default: 4 pods or 100 percent per 15 s, whichever allows more.",
    )


class ScaleDownRules(SpecModel):
    """How fast replicas may shrink (the HPA's behavior.scaleDown; its defaults but the window)."""

    stabilization_window_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_STABILIZATION_WINDOW_SECONDS,
        description="Scale down only to the highest recommendation of this many past seconds. Default: the "
        "pool's podStartSeconds (an idle pod is kept as long as a new one would take to start; the HPA's "
        "default is 300).",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX, description="Max (default), Min or Disabled (never scale down)."
    )
    policies: tuple[ScalingPolicy, ...] = Field(
        default=(_percent(100, 15),),
        min_length=1,
        description="Rate limits. Default: 100 percent per 15 s.",
    )

    def window_seconds(self, default: int) -> int:
        """The stabilization window, ``default`` when the spec leaves it unset."""
        return default if self.stabilization_window_seconds is None else self.stabilization_window_seconds


class Behavior(SpecModel):
    """Scaling behaviour in the HPA's vocabulary and with its defaults, but the scale-down window.

    The HPA keeps 300 s of recommendations before scaling down because a CPU metric is noisy and
    it cannot tell an idle pod from a busy one. This operator removes idle pods first, never a
    busy one, and adds pods only for jobs the running workers cannot start in time, so an idle pod
    is worth keeping only as long as starting a new one would take (``podStartSeconds``).
    """

    scale_up: ScaleUpRules = Field(default=ScaleUpRules(), description="Rules for adding replicas.")
    scale_down: ScaleDownRules = Field(default=ScaleDownRules(), description="Rules for removing replicas.")


class RoleBehavior(SpecModel):
    """Per-role behaviour; each direction given replaces the pool's for this role."""

    scale_up: ScaleUpRules | None = Field(
        default=None, description="Rules for adding replicas; the pool's behavior.scaleUp if unset."
    )
    scale_down: ScaleDownRules | None = Field(
        default=None, description="Rules for removing replicas; the pool's behavior.scaleDown if unset."
    )


class QuotaSpec(SpecModel):
    """Replicas of provider-gated roles while the provider's auth or quota blocks calls."""

    replicas_when_blocked: int = Field(
        default=0, ge=0, description="Cap while auth or quota is blocked (retryAt in the future). Default 0."
    )
    probe_replicas: int = Field(
        default=1,
        ge=1,
        description="Cap once retryAt has passed until a call succeeds (half-open). Default 1.",
    )


class SecretEnvSource(SpecModel):
    """Source of an environment variable's value."""

    secret_key_ref: SecretKeyRef = Field(description="Secret key holding the value.")


class EnvVar(SpecModel):
    """One extra environment variable of the role's worker container: a value or a secret key."""

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value; leave unset when valueFrom is used.")
    value_from: SecretEnvSource | None = Field(default=None, description="Take the value from a Secret key.")


class RoleSpec(SpecModel):
    """One kind of worker: a Deployment <pool>-<role> whose replicas the operator sets."""

    queues: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="RQ queues the workers listen on, in priority order. Required for custom roles; "
        "built-in roles (llm, reconciler, recorder) listen on their own queue.",
    )
    min_replicas: int = Field(default=0, ge=0, description="Fewest pods. Default 0 (scale to zero).")
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Most pods. Default 10 for llm, 5 for reconciler, 2 for recorder, 5 for custom roles.",
    )
    workers_per_pod: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKERS_PER_POD,
        description="RQ workers per pod (WORKER_COUNT, 1-20). Default 2 for llm, 1 otherwise.",
    )
    calls_per_worker: int = Field(
        default=1,
        ge=1,
        le=MAX_CALLS_PER_WORKER,
        description="Provider calls each worker process holds in flight (LLM_CONCURRENCY, 1-256); above 1 "
        "only for roles that consume the llm queue. A pod has workersPerPod x callsPerWorker call slots. "
        "Default 1.",
    )
    target_jobs_per_worker: int = Field(
        default=1,
        ge=1,
        description="Jobs of demand one call slot should carry (a worker has callsPerWorker slots, 1 unless "
        "set). Default 1.",
    )
    activation_jobs: int = Field(
        default=0,
        ge=0,
        description="Demand at or below this, with no worker busy, scales the role to zero. Default 0.",
    )
    job_timeout_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Job timeout of the role's queues. Default llm 600, reconciler 300, recorder 60, "
        "custom roles the longest default of their queues (180 for queues the project does not know).",
    )
    resources: dict[str, Any] | None = Field(
        default=None, description="Container resources (a Kubernetes ResourceRequirements object)."
    )
    env: tuple[EnvVar, ...] = Field(default=(), description="Extra environment variables of the workers.")
    behavior: RoleBehavior | None = Field(
        default=None, description="Scaling behaviour of this role; the pool's behavior if unset."
    )
    gated_by_provider: StrictBool | None = Field(
        default=None,
        description="Whether the provider's auth/quota state caps this role. Default true for llm only.",
    )
    termination_grace_period_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Pod grace period; must be at least jobTimeoutSeconds + 30 so scale-in lets a running "
        "job finish. Default jobTimeoutSeconds + 30.",
    )


def _builtin_roles() -> dict[str, RoleSpec]:
    return {"llm": RoleSpec(), "reconciler": RoleSpec(), "recorder": RoleSpec()}


class PoolSpec(SpecModel):
    """A pool of RQ workers for one Redis and one LLM provider, one Deployment per role."""

    image: str = Field(min_length=1, description="Worker image, e.g. ghcr.io/example/pirate-worker:0.1.0.")
    redis: RedisSpec = Field(description="Redis holding the RQ queues and the provider state.")
    provider: ProviderSpec = Field(description="LLM provider of the llm role.")
    database: DatabaseSpec | None = Field(
        default=None,
        description="HSDS database of the reconciler (DATABASE_URL). Unset: a SQLite file on each pod's own "
        "storage, lost with the pod (condition ResultsNotDurable).",
    )
    outputs: OutputsSpec | None = Field(
        default=None,
        description="Recorder files (OUTPUT_DIR). Unset: each pod's own storage, lost with the pod "
        "(condition ResultsNotDurable).",
    )
    ephemeral_results: StrictBool = Field(
        default=False,
        description="Accept results on pod-local storage for a throwaway run: no ResultsNotDurable warning. "
        "Default false.",
    )
    polling_interval_seconds: int = Field(
        default=2, ge=1, description="Seconds between two scaling decisions. Default 2."
    )
    pod_start_seconds: int = Field(
        default=DEFAULT_POD_START_SECONDS,
        ge=0,
        le=MAX_POD_START_SECONDS,
        description="Seconds from a new replica to its workers taking jobs. Scale-up adds pods only for jobs "
        "the running workers will not have started by then, an idle pod is kept this long by default, and "
        "a quota-blocked llm role starts this early before the retry time. "
        f"Default {DEFAULT_POD_START_SECONDS}.",
    )
    roles: dict[str, RoleSpec] = Field(
        default=_builtin_roles(),
        min_length=1,
        description="Roles by name. Omitted: llm, reconciler and recorder with their defaults. When given, "
        "exactly the roles listed run; names other than the built-in ones are custom roles.",
    )
    quota: QuotaSpec = Field(default=QuotaSpec(), description="Replicas while the provider is blocked.")
    behavior: Behavior = Field(default=Behavior(), description="Scaling behaviour of every role.")
    paused: StrictBool = Field(
        default=False, description="Stop scaling: replicas stay as they are until unpaused. Default false."
    )
    dry_run: StrictBool = Field(
        default=False,
        description="Decide and report in status, but never change replicas. Default false.",
    )
