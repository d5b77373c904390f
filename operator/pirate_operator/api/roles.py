"""Role settings with every role-dependent default resolved.

The CRD cannot express defaults that depend on a map key (``llm`` gets ``maxReplicas: 10``, a
custom role 5), so ``RoleSpec`` leaves them unset and this module fills them in, once, for every
consumer: the Deployment builder, the decision and the local mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pirate_operator.api.spec import (
    DEFAULT_POD_START_SECONDS,
    Behavior,
    EnvVar,
    PoolSpec,
    QuotaSpec,
    RoleSpec,
)
from pirate_worker.contracts.queues import (
    BUILTIN_ROLES,
    DEFAULT_JOB_TIMEOUTS,
    LLM_QUEUE,
    PROVIDER_GATED_ROLES,
    queues_for_role,
)

#: ``maxReplicas`` when unset.
DEFAULT_MAX_REPLICAS: Final[Mapping[str, int]] = {"llm": 10, "reconciler": 5, "recorder": 2}
CUSTOM_MAX_REPLICAS: Final = 5
#: ``workersPerPod`` when unset: LLM calls mostly wait on the network, so two share a pod.
DEFAULT_WORKERS_PER_POD: Final[Mapping[str, int]] = {"llm": 2}
CUSTOM_WORKERS_PER_POD: Final = 1
#: RQ's own default job timeout, used for queues the project does not define.
RQ_DEFAULT_JOB_TIMEOUT: Final = 180
#: Grace beyond the job timeout so SIGTERM's warm shutdown lets the running job finish.
GRACE_MARGIN_SECONDS: Final = 30


@dataclass(frozen=True)
class EffectiveRole:
    """One role of a pool with every default applied; what the decision and the builders read."""

    name: str
    queues: tuple[str, ...]
    min_replicas: int = 0
    max_replicas: int = CUSTOM_MAX_REPLICAS
    workers_per_pod: int = CUSTOM_WORKERS_PER_POD
    #: Provider calls one worker process holds in flight (``LLM_CONCURRENCY``); each is a call slot.
    calls_per_worker: int = 1
    #: Jobs of demand one call slot should carry.
    target_jobs_per_worker: int = 1
    activation_jobs: int = 0
    job_timeout_seconds: int = RQ_DEFAULT_JOB_TIMEOUT
    termination_grace_period_seconds: int = RQ_DEFAULT_JOB_TIMEOUT + GRACE_MARGIN_SECONDS
    gated_by_provider: bool = False
    #: As specified: a scale-down window left unset is None here (see :attr:`scaling_behavior`).
    behavior: Behavior = field(default_factory=Behavior)
    quota: QuotaSpec = field(default_factory=QuotaSpec)
    polling_interval_seconds: int = 2
    pod_start_seconds: int = DEFAULT_POD_START_SECONDS
    resources: Mapping[str, Any] | None = None
    env: tuple[EnvVar, ...] = ()

    @property
    def slots_per_pod(self) -> int:
        """Jobs one pod runs at once: workersPerPod x callsPerWorker (a busy RQ worker is a process)."""
        return self.workers_per_pod * self.calls_per_worker

    @property
    def capacity_per_pod(self) -> int:
        """Jobs of demand one pod is meant to carry: targetJobsPerWorker x workersPerPod x callsPerWorker.

        ``targetJobsPerWorker`` counts per call slot: a worker holding 4 calls in flight carries 4
        times the demand of one holding 1.
        """
        return self.target_jobs_per_worker * self.slots_per_pod

    @property
    def consumes_llm(self) -> bool:
        """Whether the role's workers take jobs of the llm queue (the only ones that call the provider)."""
        return LLM_QUEUE in self.queues

    @property
    def scaling_behavior(self) -> Behavior:
        """The behaviour the decision applies: an unset scale-down window is ``pod_start_seconds``."""
        down = self.behavior.scale_down
        if down.stabilization_window_seconds is not None:
            return self.behavior
        resolved = down.model_copy(update={"stabilization_window_seconds": self.pod_start_seconds})
        return self.behavior.model_copy(update={"scale_down": resolved})

    @property
    def builtin(self) -> bool:
        """Whether this is one of the project's own roles (llm, reconciler, recorder)."""
        return self.name in BUILTIN_ROLES


def default_job_timeout(queues: tuple[str, ...]) -> int:
    """The longest default timeout among the queues, so no queue's jobs are cut short."""
    return max(
        (DEFAULT_JOB_TIMEOUTS.get(queue, RQ_DEFAULT_JOB_TIMEOUT) for queue in queues),
        default=RQ_DEFAULT_JOB_TIMEOUT,
    )


def effective_role(name: str, role: RoleSpec, pool: PoolSpec) -> EffectiveRole:
    """Resolve one role of ``pool``; raises ``ValueError`` for a custom role without queues."""
    queues = queues_for_role(name, role.queues or ())
    timeout = role.job_timeout_seconds or default_job_timeout(queues)
    override = role.behavior
    behavior = Behavior(
        scale_up=(override.scale_up if override and override.scale_up else pool.behavior.scale_up),
        scale_down=(override.scale_down if override and override.scale_down else pool.behavior.scale_down),
    )
    return EffectiveRole(
        name=name,
        queues=queues,
        min_replicas=role.min_replicas,
        max_replicas=(
            role.max_replicas
            if role.max_replicas is not None
            else DEFAULT_MAX_REPLICAS.get(name, CUSTOM_MAX_REPLICAS)
        ),
        workers_per_pod=role.workers_per_pod or DEFAULT_WORKERS_PER_POD.get(name, CUSTOM_WORKERS_PER_POD),
        calls_per_worker=role.calls_per_worker,
        target_jobs_per_worker=role.target_jobs_per_worker,
        activation_jobs=role.activation_jobs,
        job_timeout_seconds=timeout,
        termination_grace_period_seconds=(
            role.termination_grace_period_seconds or timeout + GRACE_MARGIN_SECONDS
        ),
        gated_by_provider=(
            role.gated_by_provider if role.gated_by_provider is not None else name in PROVIDER_GATED_ROLES
        ),
        behavior=behavior,
        quota=pool.quota,
        polling_interval_seconds=pool.polling_interval_seconds,
        pod_start_seconds=pool.pod_start_seconds,
        resources=role.resources,
        env=role.env,
    )


def effective_roles(pool: PoolSpec) -> dict[str, EffectiveRole]:
    """Every role of ``pool``, resolved, in name order (so iteration and output are stable)."""
    return {name: effective_role(name, pool.roles[name], pool) for name in sorted(pool.roles)}
