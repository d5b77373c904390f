"""``read_pool_observation`` against a real redis-server, with states built through rq's own API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.executions import Execution
from rq.serializers import JSONSerializer

from pirate_operator.api import EffectiveRole, PoolSpec, effective_roles
from pirate_operator.sources import (
    PodWorkers,
    PoolObservation,
    RedisUnavailable,
    open_redis,
    pod_of_worker,
    read_pool_observation,
)
from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import ProviderCondition, StateDocument
from pirate_worker.runtime.embedded_redis import free_port

pytestmark = pytest.mark.integration


def _spec(**roles: dict[str, object]) -> PoolSpec:
    body: dict[str, object] = {
        "image": "example/worker:1",
        "redis": {"url": "redis://localhost:6379/0"},
        "provider": {"name": "anthropic", "apiKeySecretRef": {"name": "keys", "key": "anthropic"}},
        "pollingIntervalSeconds": 2,
    }
    if roles:
        body["roles"] = roles
    return PoolSpec.model_validate(body)


ROLES = effective_roles(_spec())


def _queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis, serializer=JSONSerializer)


def _enqueue(redis: Redis, queue: str, count: int) -> list[str]:
    q = _queue(redis, queue)
    return [q.enqueue("time.sleep", 0, job_timeout=60).id for _ in range(count)]


def _now() -> datetime:
    return datetime.now(UTC)


def _read(
    redis: Redis,
    now: datetime | None = None,
    roles: Mapping[str, EffectiveRole] = ROLES,
    provider: str = "anthropic",
) -> PoolObservation:
    return read_pool_observation(redis, roles, now or _now(), provider=provider)


def test_empty_redis_reads_zero_in_one_round_trip(redis: Redis) -> None:
    seen = _read(redis)
    assert set(seen.roles) == {"llm", "reconciler", "recorder"}
    for reading in seen.roles.values():
        assert reading.observation.demand == 0
        assert reading.pods == {}
    assert seen.provider.condition == ProviderCondition.OK
    assert seen.round_trips == 1


def test_queued_jobs_are_counted_per_role_and_summed_over_a_custom_roles_queues(redis: Redis) -> None:
    _enqueue(redis, "llm", 5)
    _enqueue(redis, "reconciler", 2)
    _enqueue(redis, "high", 3)
    _enqueue(redis, "default", 4)
    roles = effective_roles(_spec(llm={}, batch={"queues": ["high", "default"]}))
    seen = _read(redis, roles=roles)
    assert seen.roles["llm"].observation.queued == 5
    assert seen.roles["batch"].observation.queued == 7
    assert seen.roles["batch"].observation.demand == 7
    assert seen.queued == 12  # the reconciler queue belongs to no role of this pool


def test_dequeued_not_started_counts_only_jobs_still_queued(redis: Redis) -> None:
    _enqueue(redis, "llm", 3)
    found = Queue.dequeue_any([_queue(redis, "llm")], None, connection=redis, serializer=JSONSerializer)
    assert found is not None
    seen = _read(redis).roles["llm"].observation
    assert (seen.queued, seen.dequeued_not_started, seen.demand) == (2, 1, 3)
    # Once started, a job left behind in the intermediate list (multi-queue workers) is not counted
    # twice: it is in flight now.
    job, _ = found
    with redis.pipeline() as pipe:
        Execution.create(job, ttl=60, pipeline=pipe)
        job.prepare_for_execution("pod-a.llm.0.1", pipeline=pipe)
        pipe.execute()
    seen = _read(redis).roles["llm"].observation
    assert (seen.queued, seen.dequeued_not_started, seen.live_in_flight, seen.demand) == (2, 0, 1, 3)


def test_a_job_whose_execution_exists_but_not_its_started_status_counts_once(redis: Redis) -> None:
    """rq's forking worker creates the execution (started registry) before its horse marks the job
    started and drops it from the intermediate list: in between the job is in both places."""
    _enqueue(redis, "llm", 1)
    found = Queue.dequeue_any([_queue(redis, "llm")], None, connection=redis, serializer=JSONSerializer)
    assert found is not None
    job, _ = found
    with redis.pipeline() as pipe:
        Execution.create(job, ttl=60, pipeline=pipe)  # what Worker.prepare_execution does first
        pipe.execute()
    assert job.get_status(refresh=True) == "queued"
    seen = _read(redis).roles["llm"].observation
    assert (seen.dequeued_not_started, seen.live_in_flight, seen.demand) == (0, 1, 1)


def test_started_entries_are_live_until_their_heartbeat_expires_then_reported_not_counted(
    redis: Redis,
) -> None:
    job = _queue(redis, "reconciler").enqueue("time.sleep", 0, job_timeout=60)
    _queue(redis, "reconciler").remove(job)
    with redis.pipeline() as pipe:
        Execution.create(job, ttl=60, pipeline=pipe)
        pipe.execute()
    now = _now()
    live = _read(redis, now).roles["reconciler"].observation
    assert (live.live_in_flight, live.stale_in_flight, live.demand) == (1, 0, 1)
    later = _read(redis, now + timedelta(seconds=120)).roles["reconciler"].observation
    assert (later.live_in_flight, later.stale_in_flight, later.demand) == (0, 1, 0)


def test_only_retries_due_within_the_polling_interval_count_as_demand(redis: Redis) -> None:
    q = _queue(redis, "llm")
    q.enqueue_in(timedelta(seconds=1), "time.sleep", 0, job_timeout=60)
    q.enqueue_in(timedelta(hours=1), "time.sleep", 0, job_timeout=60)
    seen = _read(redis).roles["llm"].observation
    assert (seen.retries_due, seen.scheduled, seen.demand) == (1, 2, 1)


def _register(redis: Redis, name: str, queues: list[str], state: str) -> Worker:
    worker = Worker([_queue(redis, q) for q in queues], name=name, connection=redis)
    worker.register_birth()
    worker.set_state(state)
    return worker


def test_workers_are_mapped_to_pods_by_name_and_counted_by_state(redis: Redis) -> None:
    _register(redis, "pool-llm-7d9f-abcde.llm.0.101", ["llm"], "busy")
    _register(redis, "pool-llm-7d9f-abcde.llm.1.102", ["llm"], "idle")
    _register(redis, "pool-llm-7d9f-xyz12.llm.0.55", ["llm"], "paused")
    _register(redis, "pool-llm-7d9f-xyz12.llm.1.56", ["llm"], "started")
    _register(redis, "0123456789abcdef", ["llm"], "busy")  # a plain rq worker: counted, not mapped
    gone = _register(redis, "pool-llm-7d9f-gone0.llm.0.9", ["llm"], "busy")
    redis.delete(gone.key)  # died without unregistering: its set entry outlives its key
    _register(redis, "pool-reconciler-1-aaaaa.reconciler.0.7", ["reconciler"], "busy")
    seen = _read(redis)
    llm = seen.roles["llm"]
    assert llm.observation.busy_workers == 2
    assert llm.pods == {
        "pool-llm-7d9f-abcde": PodWorkers(busy=1, idle=1),
        "pool-llm-7d9f-xyz12": PodWorkers(paused=1, other=1),
    }
    assert llm.busy_pods == {"pool-llm-7d9f-abcde": 1}
    assert seen.roles["reconciler"].busy_pods == {"pool-reconciler-1-aaaaa": 1}
    assert seen.round_trips == 2


def test_mean_job_time_comes_from_the_live_workers_rq_statistics(redis: Redis) -> None:
    """Summed over the role's workers: (10 s + 2 s) / (3 + 1 jobs); unreadable counters count as 0."""
    first = _register(redis, "pool-llm-1-aaaaa.llm.0.1", ["llm"], "idle")
    redis.hset(first.key, mapping={"successful_job_count": 3, "total_working_time": 10.0})
    second = _register(redis, "pool-llm-1-bbbbb.llm.0.2", ["llm"], "busy")
    redis.hset(second.key, mapping={"failed_job_count": 1, "total_working_time": 2.0})
    odd = _register(redis, "pool-llm-1-ccccc.llm.0.3", ["llm"], "idle")
    redis.hset(odd.key, mapping={"successful_job_count": "many", "total_working_time": "nan"})
    fresh = _register(redis, "pool-reconciler-1-ddddd.reconciler.0.4", ["reconciler"], "idle")
    seen = _read(redis)
    assert seen.roles["llm"].observation.mean_job_seconds == pytest.approx(3.0)
    assert seen.roles["reconciler"].observation.mean_job_seconds is None  # no job run yet
    assert seen.roles["recorder"].observation.mean_job_seconds is None  # no worker at all
    assert fresh.key  # registered, counted among the workers, no statistics


@pytest.mark.parametrize(
    ("name", "role", "pod"),
    [
        ("pantry-llm-5f7c9-x2x7q.llm.0.4242", "llm", "pantry-llm-5f7c9-x2x7q"),
        ("a.b.c.llm.3.17", "llm", "a.b.c"),  # pod names may contain dots, role names may not
        ("pantry-llm-5f7c9-x2x7q.llm.0.4242", "recorder", None),
        ("0123456789abcdef", "llm", None),
        ("host.llm.x.1", "llm", None),
        (".llm.0.1", "llm", None),
    ],
)
def test_pod_of_worker(name: str, role: str, pod: str | None) -> None:
    assert pod_of_worker(name, role) == pod


def _state(retry_at: datetime, status: str = "quota_exceeded") -> str:
    now = _now()
    return StateDocument(
        status=status, message="rate limited", timestamp=now, retry_at=retry_at, retry_after=60
    ).to_json()


def test_provider_state_comes_from_the_pools_provider_keys(redis: Redis) -> None:
    now = _now()
    redis.set(keys.quota_status_key("anthropic"), _state(now + timedelta(minutes=5)))
    seen = _read(redis, now)
    assert seen.provider.condition == ProviderCondition.QUOTA_EXCEEDED
    assert seen.provider.retry_at is not None
    # another provider's keys do not matter
    assert _read(redis, now, provider="openai").provider.condition == ProviderCondition.OK
    # past retry_at: probing (half-open) until a success clears the key
    assert _read(redis, now + timedelta(minutes=6)).provider.condition == ProviderCondition.PROBING
    # auth wins over quota
    redis.set(keys.auth_status_key("claude"), _state(now + timedelta(minutes=1), "auth_failed"))
    assert _read(redis, now).provider.condition == ProviderCondition.AUTH_FAILED


def test_rate_budget_comes_from_the_pools_provider_hash_in_the_first_round_trip(redis: Redis) -> None:
    now = _now()
    assert _read(redis, now).budget is None
    redis.hset(
        keys.rate_budget_key("anthropic"),
        mapping={"requests:limit": 60, "requests:used": 1, "call_s": 2.5, "updated": now.timestamp()},
    )
    seen = _read(redis, now)
    assert seen.round_trips == 1
    assert seen.budget is not None
    assert seen.budget.calls_in_flight() == 2.5
    assert seen.budget.age_s(now.timestamp()) == 0
    # "claude" shares anthropic's keys; openai has its own budget
    assert _read(redis, now, provider="claude").budget == seen.budget
    assert _read(redis, now, provider="openai").budget is None


def test_reading_changes_nothing_in_redis(redis: Redis) -> None:
    _enqueue(redis, "llm", 2)
    Queue.dequeue_any([_queue(redis, "llm")], None, connection=redis, serializer=JSONSerializer)
    job = _queue(redis, "recorder").enqueue("time.sleep", 0, job_timeout=60)
    with redis.pipeline() as pipe:
        Execution.create(job, ttl=1, pipeline=pipe)
        pipe.execute()
    _register(redis, "p.llm.0.1", ["llm"], "busy")
    _queue(redis, "llm").enqueue_in(timedelta(seconds=1), "time.sleep", 0, job_timeout=60)
    redis.hset(keys.rate_budget_key("anthropic"), mapping={"requests:limit": 60, "updated": 1})

    def dump() -> dict[bytes | str, object]:
        return {key: redis.dump(key) for key in sorted(redis.keys("*"))}

    before = dump()
    seen = _read(redis, _now() + timedelta(seconds=300))  # every started entry is stale by then
    assert seen.roles["recorder"].observation.stale_in_flight == 1
    assert dump() == before


def test_unreachable_redis_raises_quickly() -> None:
    client = open_redis(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="cannot read Redis"):
        _read(client)
    assert time.monotonic() - started < 5


_WORKER_SCRIPT = """
import os, sys
from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer
connection = Redis.from_url(sys.argv[1])
queue = Queue("slow", connection=connection, serializer=JSONSerializer)
Worker([queue], name=f"pool-slow-abc-12345.slow.0.{os.getpid()}", connection=connection,
       serializer=JSONSerializer).work(burst=sys.argv[2] == "burst")
"""


def _start_worker(redis_url: str, mode: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen([sys.executable, "-c", _WORKER_SCRIPT, redis_url, mode], env=env)


@pytest.fixture
def real_worker(redis_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = _start_worker(redis_url, "burst")
    yield proc
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_a_real_rq_workers_job_times_give_the_mean_job_time(redis: Redis, redis_url: str) -> None:
    """Jobs of 0.1 s and 0.5 s run by a real rq worker: the reader's mean is their mean, 0.3 s."""
    queue = _queue(redis, "slow")
    jobs = [queue.enqueue("time.sleep", seconds, job_timeout=60) for seconds in (0.1, 0.5, 0.1, 0.5)]
    roles = effective_roles(_spec(slow={"queues": ["slow"]}))
    proc = _start_worker(redis_url, "forever")
    try:
        deadline = time.monotonic() + 30
        while queue.finished_job_registry.count < len(jobs):
            assert time.monotonic() < deadline, "the worker did not finish the jobs"
            time.sleep(0.1)
        mean = _read(redis, roles=roles).roles["slow"].observation.mean_job_seconds
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert mean is not None
    assert 0.3 <= mean < 0.45  # rq times the job function only: sleep plus its own bookkeeping


@pytest.mark.slow
def test_a_real_rq_worker_running_a_job_is_busy_on_its_pod_and_in_flight(
    redis: Redis, redis_url: str, real_worker: subprocess.Popen[bytes]
) -> None:
    _queue(redis, "slow").enqueue("time.sleep", 4, job_timeout=60)
    roles = effective_roles(_spec(slow={"queues": ["slow"]}))
    deadline = time.monotonic() + 20
    while True:
        reading = _read(redis, roles=roles).roles["slow"]
        # rq marks the worker busy a moment before it writes the job's execution: wait for both.
        if reading.observation.busy_workers and reading.observation.live_in_flight:
            break
        assert time.monotonic() < deadline, f"worker never busy with the job in flight: {reading}"
        time.sleep(0.1)
    assert reading.observation.live_in_flight == 1
    assert reading.observation.demand == 1
    assert reading.busy_pods == {"pool-slow-abc-12345": 1}
    real_worker.wait(timeout=30)
    done = _read(redis, roles=roles).roles["slow"]
    assert (done.observation.demand, done.observation.busy_workers, done.pods) == (0, 0, {})
