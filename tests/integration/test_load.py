"""Load at CI size (issue 7, item 4; the full run with 20,000 jobs and 20 processes is ``bench/load.py``).

2,000 distinct LLM jobs through 4 real worker processes (the offline rules provider): all finish,
none fail, no worker restarts, worker memory flat between the first and the last quarter of the
run; and the operator's demand read costs the same Redis commands at 10 and at 2,000 queued.
No timed assertions: the only clock is a generous deadline for the run to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median

import pytest
from redis import Redis

from pirate_operator.api import PoolSpec, effective_roles
from pirate_operator.sources import read_pool_observation
from pirate_worker.contracts.queues import LLM_QUEUE
from pirate_worker.services.queueing import queue
from tests.support.load import (
    counting_client,
    rss_kib,
    server_command_total,
    server_output_bytes,
    synthetic_records,
)
from tests.support.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 2_000
PROCESSES = 4
ROLES = effective_roles(
    PoolSpec.model_validate(
        {"image": "example/worker:1", "redis": {"url": "redis://unused"}, "provider": {"name": "rules"}}
    )
)


@dataclass(frozen=True)
class ReadCost:
    """What one operator demand read cost the server, and what it saw."""

    server_commands: int
    client_commands: int
    reply_bytes: int
    queued: int


def operator_read_cost(redis: Redis, url: str) -> ReadCost:
    """Measure one ``read_pool_observation``; only valid while no other client talks to Redis."""
    client, count = counting_client(url)
    read_pool_observation(client, ROLES, datetime.now(UTC), provider="rules")  # connects (HELLO etc.)
    count.commands = 0
    commands_before = server_command_total(redis)
    bytes_before = server_output_bytes(redis)
    seen = read_pool_observation(client, ROLES, datetime.now(UTC), provider="rules")
    bytes_after = server_output_bytes(redis)
    commands_after = server_command_total(redis)
    client.close()
    return ReadCost(
        # The three INFO calls before the last one are counted by it.
        server_commands=commands_after - commands_before - 3,
        client_commands=count.commands,
        # Includes the reply to the first INFO stats, the same size each time within a few digits.
        reply_bytes=bytes_after - bytes_before,
        queued=seen.roles["llm"].observation.queued,
    )


def test_2000_jobs_through_4_processes_finish_with_flat_memory_and_constant_reads(
    redis, redis_url, submit, worker_env, workers, tmp_path
):
    records = synthetic_records(JOBS)
    assert len(submit(records[:10]).enqueued) == 10
    few = operator_read_cost(redis, redis_url)
    report = submit(records[10:])
    assert len(report.enqueued) == JOBS - 10 and not report.deduplicated
    many = operator_read_cost(redis, redis_url)
    assert (few.queued, many.queued) == (10, JOBS)
    assert few.server_commands == few.client_commands > 0
    # O(1) in the queue length: the same commands, and replies that do not grow with the queue
    # (one LRANGE over it would add ~80 KB; the counts themselves add a few digits).
    assert (many.server_commands, many.client_commands) == (few.server_commands, few.client_commands)
    assert many.reply_bytes <= few.reply_bytes + 256, (few, many)

    worker = WorkerProcess.start(LLM_QUEUE, PROCESSES, worker_env, tmp_path, scripted=False)
    workers.append(worker)
    children = wait_for(
        lambda: len(worker.child_pids()) == PROCESSES and worker.child_pids(), 30, what="children"
    )
    llm = queue(redis, LLM_QUEUE)
    samples: list[tuple[int, dict[int, int]]] = []  # (finished so far, RSS KiB per child)
    deadline = time.monotonic() + 900
    while (finished := llm.finished_job_registry.get_job_count(cleanup=False)) < JOBS:
        assert time.monotonic() < deadline, (
            f"only {finished} of {JOBS} finished in 900 s:\n{worker.log()[-2000:]}"
        )
        assert llm.failed_job_registry.get_job_count(cleanup=False) == 0, worker.log()[-3000:]
        sizes = {pid: rss_kib(pid) for pid in children}
        assert None not in sizes.values(), f"a worker process died: {sizes}"
        if finished:
            samples.append((finished, {pid: size for pid, size in sizes.items() if size is not None}))
        time.sleep(0.2)

    assert llm.failed_job_registry.get_job_count(cleanup=False) == 0
    assert llm.started_job_registry.get_job_count(cleanup=False) == 0
    assert llm.count == 0
    assert sorted(worker.child_pids()) == sorted(children), "a worker process was restarted"
    first = [s for done, s in samples if done <= JOBS // 4]
    last = [s for done, s in samples if done >= JOBS * 3 // 4]
    assert first and last, f"too few samples to compare ({len(samples)})"
    for pid in children:
        early, late = median(s[pid] for s in first), median(s[pid] for s in last)
        # Generous: a leak of a few KiB per job on 500 jobs per process would not show; a
        # per-job cache of payloads or results, or a growing connection pool, would.
        assert late <= early * 1.25 + 16 * 1024, f"worker {pid} grew from {early} to {late} KiB"
