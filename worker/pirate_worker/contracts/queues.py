"""Queue names, built-in roles and the job functions RQ calls by dotted path."""

from __future__ import annotations

from typing import Final

LLM_QUEUE: Final = "llm"
RECONCILER_QUEUE: Final = "reconciler"
RECORDER_QUEUE: Final = "recorder"

#: Built-in roles and the queues their workers listen on.
BUILTIN_ROLES: Final[dict[str, tuple[str, ...]]] = {
    "llm": (LLM_QUEUE,),
    "reconciler": (RECONCILER_QUEUE,),
    "recorder": (RECORDER_QUEUE,),
}

#: Roles whose work calls the LLM provider, so the provider's auth/quota state gates them.
PROVIDER_GATED_ROLES: Final = frozenset({"llm"})

#: Job timeouts in seconds, always passed explicitly on enqueue.
DEFAULT_JOB_TIMEOUTS: Final[dict[str, int]] = {
    LLM_QUEUE: 600,
    RECONCILER_QUEUE: 300,
    RECORDER_QUEUE: 60,
}

#: Dotted paths of the job functions; jobs are enqueued by name, never by pickled callable.
LLM_JOB_FUNC: Final = "pirate_worker.jobs.llm.process_llm_job"
RECONCILER_JOB_FUNC: Final = "pirate_worker.jobs.reconciler.reconcile_job"
RECORDER_JOB_FUNC: Final = "pirate_worker.jobs.recorder.record_job"

#: The one job function each built-in queue carries. Workers of built-in roles run nothing else:
#: RQ would otherwise import and call any dotted path written into their queue (``os.system``).
JOB_FUNCS: Final[dict[str, str]] = {
    LLM_QUEUE: LLM_JOB_FUNC,
    RECONCILER_QUEUE: RECONCILER_JOB_FUNC,
    RECORDER_QUEUE: RECORDER_JOB_FUNC,
}

#: RQ retry schedule for transient errors of the LLM job (seconds before attempts 2, 3 and 4).
LLM_RETRY_INTERVALS: Final = (60, 300, 900)

#: RQ retry schedule of reconciler jobs: a database outage (restart, failover) is usually short,
#: so the first retry comes sooner, and the schedule reaches further (about 1.4 h) before failing.
RECONCILER_RETRY_INTERVALS: Final = (10, 60, 300, 900, 3600)


def queues_for_role(role: str, custom_queues: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Return the queues a role's workers listen on; custom roles name their own queues."""
    if custom_queues:
        return custom_queues
    try:
        return BUILTIN_ROLES[role]
    except KeyError:
        raise ValueError(
            f"unknown role {role!r}: use one of {', '.join(BUILTIN_ROLES)} or name its queues"
        ) from None


def reconcile_job_id(llm_job_id: str) -> str:
    """Id of the reconciler job chained from an LLM job (stable, so re-chaining is idempotent)."""
    return f"{llm_job_id}-reconcile"


def record_job_id(llm_job_id: str) -> str:
    """Id of the recorder job chained from an LLM job."""
    return f"{llm_job_id}-record"


def allowed_job_functions(queues: tuple[str, ...]) -> frozenset[str] | None:
    """The job functions workers on ``queues`` may run; None (any) when a queue is not built-in.

    Custom roles serve queues of the user's own jobs, whose functions this package cannot know.
    """
    if not queues or any(name not in JOB_FUNCS for name in queues):
        return None
    return frozenset(JOB_FUNCS[name] for name in queues)
