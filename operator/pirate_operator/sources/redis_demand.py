"""Read a pool's demand, workers, provider state and rate budget from Redis: read-only, pipelined.

Key names come from rq's own classes (``Queue``, its registries and intermediate queue,
``Job.key_for``, the worker registration sets), so rq's layout is never re-implemented. Nothing
here mutates Redis: the started registry is counted with ZCOUNT around ``now`` instead of calling
rq's cleanup, which would move expired jobs and is the workers' business.

Round trips: the first pipeline reads every count, the provider keys and its rate-limit budget
(:mod:`pirate_worker.contracts.rate_budget`), the worker sets and the
intermediate (dequeued) lists of every role at once. A second, small pipeline runs only when
workers are registered or jobs sit in an intermediate list: worker states and those jobs' status
need the names read by the first. An idle pool costs one round trip per cycle.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from redis import Redis
from redis.exceptions import RedisError
from rq.executions import ExecutionRegistry
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.worker import Worker
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from pirate_operator.api import EffectiveRole
from pirate_operator.scaling import RoleObservation
from pirate_operator.sources.errors import RedisUnavailable
from pirate_operator.sources.observation import PodWorkers, PoolObservation, RoleReading, WorkerState
from pirate_worker.contracts import keys
from pirate_worker.contracts.connection import as_text
from pirate_worker.contracts.provider_state import effective_state
from pirate_worker.contracts.rate_budget import parse_budget
from pirate_worker.contracts.workers import pod_of_worker

logger = logging.getLogger(__name__)

#: Most intermediate-list entries looked at per queue; the list holds at most one job per worker.
MAX_INTERMEDIATE: Final = 1000
_QUEUED: Final = JobStatus.QUEUED.value.encode()
_WORKER_PREFIX: Final = Worker.redis_worker_namespace_prefix
#: Read from each worker hash: its state, and rq's statistics (jobs run, seconds spent running them).
_WORKER_FIELDS: Final = ("state", "successful_job_count", "failed_job_count", "total_working_time")
_STATES: Final[Mapping[bytes, WorkerState]] = {
    WorkerState.BUSY.value.encode(): WorkerState.BUSY,
    WorkerState.IDLE.value.encode(): WorkerState.IDLE,
    WorkerState.PAUSED.value.encode(): WorkerState.PAUSED,
}


@dataclass
class _RoleCounts:
    """Counts of one role summed over its queues, filled from the first round trip."""

    queued: int = 0
    live: int = 0
    stale: int = 0
    due: int = 0
    scheduled: int = 0
    dequeued: list[str] = field(default_factory=list)
    worker_keys: set[str] = field(default_factory=set)


def read_pool_observation(
    redis: Redis,
    roles: Mapping[str, EffectiveRole],
    now: datetime,
    *,
    provider: str,
) -> PoolObservation:
    """Read every role's demand and workers, the provider state and its rate budget at ``now``.

    ``provider`` is the pool's provider name (``spec.provider.name``); its auth/quota keys decide the
    state, its budget hash the rate-limit cap of gated roles. Raises :class:`RedisUnavailable` when
    Redis cannot be read (the caller holds replicas).
    """
    stamp = now.timestamp()
    try:
        counts, provider_raw, budget_raw = _first_round(redis, roles, stamp, provider)
        workers, dequeued = _second_round(redis, counts, stamp)
    except RedisError as exc:
        raise RedisUnavailable(f"cannot read Redis: {exc}") from exc
    readings = {name: _reading(name, counts[name], workers, dequeued) for name in roles}
    needed_second = any(c.worker_keys or c.dequeued for c in counts.values())
    return PoolObservation(
        roles=readings,
        provider=effective_state(provider_raw[0], provider_raw[1], now),
        budget=parse_budget(budget_raw),
        read_at=now,
        round_trips=2 if needed_second else 1,
    )


def _first_round(
    redis: Redis, roles: Mapping[str, EffectiveRole], stamp: float, provider: str
) -> tuple[dict[str, _RoleCounts], Sequence[bytes | None], Mapping[str | bytes, str | bytes]]:
    pipe = redis.pipeline(transaction=False)
    layout: list[tuple[str, int]] = []
    for name, role in roles.items():
        horizon = stamp + role.polling_interval_seconds
        for queue_name in role.queues:
            queue = Queue(queue_name, connection=redis)
            started = queue.started_job_registry.key
            pipe.llen(queue.key)
            pipe.zcount(started, f"({stamp}", "+inf")
            pipe.zcount(started, "-inf", stamp)
            pipe.zcount(queue.scheduled_job_registry.key, "-inf", horizon)
            pipe.zcard(queue.scheduled_job_registry.key)
            pipe.lrange(queue.intermediate_queue_key, 0, MAX_INTERMEDIATE - 1)
            pipe.smembers(WORKERS_BY_QUEUE_KEY % queue_name)
            layout.append((name, 7))
    pipe.mget([keys.auth_status_key(provider), keys.quota_status_key(provider)])
    pipe.hgetall(keys.rate_budget_key(provider))
    values: list[Any] = pipe.execute()
    counts = {name: _RoleCounts() for name in roles}
    position = 0
    for name, width in layout:
        queued, live, stale, due, scheduled, dequeued, workers = values[position : position + width]
        position += width
        total = counts[name]
        total.queued += int(queued)
        total.live += int(live)
        total.stale += int(stale)
        total.due += int(due)
        total.scheduled += int(scheduled)
        total.dequeued.extend(as_text(job_id) for job_id in dequeued)
        total.worker_keys.update(as_text(key) for key in workers)
    return counts, values[position], values[position + 1]


def _second_round(
    redis: Redis, counts: Mapping[str, _RoleCounts], stamp: float
) -> tuple[dict[str, Sequence[bytes | None]], set[str]]:
    """Worker fields (:data:`_WORKER_FIELDS`) by worker key, and which dequeued job ids have not started."""
    worker_keys = sorted({key for role in counts.values() for key in role.worker_keys})
    job_ids = sorted({job_id for role in counts.values() for job_id in role.dequeued})
    if not worker_keys and not job_ids:
        return {}, set()
    pipe = redis.pipeline(transaction=False)
    for key in worker_keys:
        pipe.hmget(key, *_WORKER_FIELDS)
    for job_id in job_ids:
        pipe.hget(Job.key_for(job_id), "status")
        pipe.zcount(ExecutionRegistry(job_id, connection=redis).key, f"({stamp}", "+inf")
    values: list[Any] = pipe.execute()
    fields = {key: values[index] for index, key in enumerate(worker_keys)}
    per_job = values[len(worker_keys) :]
    # A single-queue worker drops the id from the intermediate list when the job starts; a
    # multi-queue worker leaves it until rq's cleanup. Only jobs still "queued" are in between,
    # and only until their worker creates the execution: from then on (while a forking worker
    # starts its horse, the status still says "queued") the started registry counts the job.
    not_started = {
        job_id
        for job_id, status, executions in zip(job_ids, per_job[::2], per_job[1::2], strict=True)
        if status == _QUEUED and not int(executions)
    }
    return fields, not_started


def _reading(
    role: str,
    counts: _RoleCounts,
    workers: Mapping[str, Sequence[bytes | None]],
    not_started: set[str],
) -> RoleReading:
    pods: dict[str, PodWorkers] = {}
    busy = 0
    jobs_run = seconds_run = 0.0
    for key in sorted(counts.worker_keys):
        raw_state, succeeded, failed, working = workers.get(key) or (None, None, None, None)
        if raw_state is None:
            continue  # the worker's key expired: it died without unregistering
        state = _STATES.get(raw_state, WorkerState.OTHER)
        busy += state == WorkerState.BUSY
        jobs_run += _statistic(succeeded) + _statistic(failed)
        seconds_run += _statistic(working)
        pod = pod_of_worker(key.removeprefix(_WORKER_PREFIX), role)
        if pod is not None:
            pods[pod] = pods.get(pod, PodWorkers()).plus(state)
    observation = RoleObservation(
        queued=counts.queued,
        dequeued_not_started=sum(1 for job_id in counts.dequeued if job_id in not_started),
        live_in_flight=counts.live,
        stale_in_flight=counts.stale,
        retries_due=counts.due,
        busy_workers=busy,
        scheduled=counts.scheduled,
        mean_job_seconds=seconds_run / jobs_run if jobs_run and seconds_run > 0 else None,
    )
    return RoleReading(observation=observation, pods=pods)


def _statistic(raw: bytes | None) -> float:
    """One of rq's worker statistics; 0 when absent or unreadable (workers write them, not us)."""
    try:
        value = float(raw) if raw is not None else 0.0
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value >= 0 else 0.0
