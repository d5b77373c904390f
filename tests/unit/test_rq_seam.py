"""The rq seam (``runtime/rq_seam.py``) is written against one rq release: this fails when rq moves.

When it fails after an rq upgrade: read the overridden methods in ``rq_seam.py`` against the new
rq's worker, adjust them, run the worker runtime tests and ``bench/throughput.py``, then update
``RQ_VERSION``.
"""

from __future__ import annotations

import inspect

import rq
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job

from pirate_worker.runtime.rq_seam import RQ_VERSION, SeamWorker

#: rq internals the seam overrides or calls, with the parameters it relies on.
RELIED_ON = {
    (SimpleWorker, "heartbeat"): ["timeout", "pipeline"],
    (SimpleWorker, "set_state"): ["state", "pipeline"],
    (SimpleWorker, "check_for_suspension"): ["burst"],
    (SimpleWorker, "get_heartbeat_ttl"): ["job", "working_time"],
    (SimpleWorker, "dequeue_job_and_maintain_ttl"): ["timeout", "max_idle_time"],
    (SimpleWorker, "execute_job"): ["job", "queue"],
    (SimpleWorker, "perform_job"): ["job", "queue", "execution"],
    (SimpleWorker, "prepare_job_execution"): ["job", "remove_from_intermediate_queue"],
    (SimpleWorker, "maintain_heartbeats"): ["job", "execution"],
    (SimpleWorker, "handle_job_success"): ["job", "queue", "started_job_registry", "execution"],
    (SimpleWorker, "_finalize_failure"): ["job", "queue", "execution", "exc_info"],
    (SimpleWorker, "cleanup_execution"): ["job", "pipeline", "execution"],
    (SimpleWorker, "request_stop"): ["signum", "frame"],
    (SimpleWorker, "_shutdown"): [],
    (SimpleWorker, "teardown"): [],
    (SimpleWorker, "reorder_queues"): ["reference_queue"],
    (Queue, "dequeue_any"): [
        "queues",
        "timeout",
        "connection",
        "job_class",
        "serializer",
        "death_penalty_class",
    ],
    (Queue, "_enqueue_job"): ["job", "pipeline", "at_front"],
    (Queue, "schedule_job"): ["job", "datetime", "pipeline"],
    (Execution, "create"): ["job", "ttl", "pipeline", "worker_name"],
    (Job, "prepare_for_execution"): ["worker_name", "pipeline"],
    (Job, "heartbeat"): ["timestamp", "ttl", "pipeline"],
}


def test_the_installed_rq_is_the_release_the_seam_was_written_against() -> None:
    assert rq.__version__ == RQ_VERSION, (
        f"rq {rq.__version__} is installed; runtime/rq_seam.py was written against rq {RQ_VERSION}"
    )


def test_every_rq_internal_the_seam_relies_on_still_has_its_parameters() -> None:
    missing = []
    for (owner, name), params in RELIED_ON.items():
        method = getattr(owner, name, None)
        if method is None:
            missing.append(f"{owner.__name__}.{name}")
            continue
        found = set(inspect.signature(method).parameters)
        missing += [f"{owner.__name__}.{name}({p})" for p in params if p not in found]
    assert missing == []


def test_the_seam_overrides_only_what_it_lists() -> None:
    """A new override of an rq method must be listed above (and so checked on the next upgrade)."""
    listed = {name for (owner, name) in RELIED_ON if owner is SimpleWorker}
    overridden = {
        name
        for name, value in vars(SeamWorker).items()
        if callable(value) and not name.startswith("__") and hasattr(SimpleWorker, name)
    }
    assert overridden <= listed, sorted(overridden - listed)
