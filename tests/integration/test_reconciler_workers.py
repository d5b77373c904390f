"""Reconciler workers (real ``pirate-workers worker --role reconciler`` processes) on one database,
SQLite and a real PostgreSQL: parallel duplicates, invalid records, a database outage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from pirate_worker.contracts.queues import RECONCILER_JOB_FUNC, RECONCILER_QUEUE
from pirate_worker.services import hsds_tables as hsds
from pirate_worker.services.queueing import enqueue_chained, fetch_job, queue
from pirate_worker.services.reconciler import database_stats, open_database
from tests.support.hsds_records import aligned_record, expected_rows, job_result
from tests.support.postgres import PostgresServer
from tests.support.processes import WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RECORDS = 200
WORKERS = 4


@pytest.fixture
def reconciler_env(worker_env: dict[str, str], database_url: str) -> dict[str, str]:
    # The plain postgresql:// form users write; the worker maps it to psycopg.
    return {**worker_env, "DATABASE_URL": database_url.replace("postgresql+psycopg://", "postgresql://")}


def start_workers(count: int, env: dict[str, str], tmp_path: Path, started: list[WorkerProcess]) -> None:
    for _ in range(count):
        started.append(WorkerProcess.start("reconciler", 1, env, tmp_path, scripted=False))


def statuses(redis: Redis, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in Job.fetch_many(ids, connection=redis, serializer=JSONSerializer):
        status = job.get_status(refresh=False).value if job is not None else "missing"
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_four_workers_reconciling_every_record_twice_create_each_row_once(
    redis: Redis,
    reconciler_env: dict[str, str],
    database_url: str,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    start_workers(WORKERS, reconciler_env, tmp_path, workers)
    ids = []
    # Both copies of a record back to back, so two workers usually hold them at the same moment.
    for i in range(RECORDS):
        payload = job_result(i, aligned_record(i))
        for copy in ("a", "b"):
            ids.append(
                enqueue_chained(
                    redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, payload, f"rec-{i}-{copy}", 3600
                ).id
            )

    wait_for(lambda: statuses(redis, ids).get("finished") == len(ids), 240, what=f"{len(ids)} finished jobs")

    assert statuses(redis, ids) == {"finished": len(ids)}
    assert queue(redis, RECONCILER_QUEUE).failed_job_registry.get_job_count(cleanup=False) == 0
    engine = open_database(database_url)
    assert database_stats(engine) == expected_rows(RECORDS)
    # Both jobs of a pair report the same rows.
    first, second = fetch_job(redis, "rec-7-a"), fetch_job(redis, "rec-7-b")
    assert first is not None and second is not None
    one, two = first.return_value(), second.return_value()
    assert (one["organization_id"], one["location_ids"], one["phone_ids"]) == (
        two["organization_id"],
        two["location_ids"],
        two["phone_ids"],
    )
    with engine.connect() as connection:
        for table, key in (
            (hsds.organization, hsds.organization.c.name_key),
            (hsds.location, hsds.location.c.address_key),
            (hsds.phone, hsds.phone.c.match_key),
        ):
            duplicates = connection.execute(
                select(key, func.count()).group_by(key).having(func.count() > 1).select_from(table)
            ).all()
            assert duplicates == [], table.name


def test_an_invalid_record_fails_its_job_with_a_json_reason(
    redis: Redis, reconciler_env: dict[str, str], workers: list[WorkerProcess], tmp_path: Path
) -> None:
    document = aligned_record(1)
    document["organization"]["name"] = 7
    document["locations"][0]["latitude"] = "north"
    job = enqueue_chained(
        redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, job_result(1, document), "bad-1", 3600
    )
    start_workers(1, reconciler_env, tmp_path, workers)

    wait_for(lambda: job.get_status(refresh=True) == "failed", 60, what="failed job")
    result = job.latest_result()
    assert result is not None and result.exc_string is not None
    reason = json.loads(result.exc_string.strip().splitlines()[-1].split(": ", 1)[1])
    assert reason["error"] == "invalid HSDS document" and reason["job_id"] == "rec-1"
    assert len(reason["violations"]) == 2
    assert any("organization.name" in v for v in reason["violations"])
    assert any("locations[0].latitude" in v for v in reason["violations"])
    job.refresh()
    assert job.retries_left == 0  # permanent: no retry budget kept for it


@pytest.fixture
def private_postgres(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    """A cluster of its own, so stopping it leaves the session's alone (the session's fixture
    decides whether PostgreSQL is available: skip locally, fail in CI)."""
    server = PostgresServer().start()
    yield server
    server.close()


def test_a_database_outage_retries_the_job_and_loses_nothing(
    redis: Redis,
    worker_env: dict[str, str],
    private_postgres: PostgresServer,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    url = private_postgres.create_database()
    start_workers(1, {**worker_env, "DATABASE_URL": url}, tmp_path, workers)
    warm = enqueue_chained(
        redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, job_result(0, aligned_record(0)), "warm", 3600
    )
    wait_for(lambda: warm.get_status(refresh=True) == "finished", 60, what="first job")

    private_postgres.stop()
    job = enqueue_chained(
        redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, job_result(1, aligned_record(1)), "during", 3600
    )
    wait_for(lambda: job.get_status(refresh=True) == "scheduled", 60, what="job scheduled for retry")
    assert "DatabaseUnavailableError: database unavailable" in workers[0].log()
    job.refresh()
    assert job.retries_left == 4

    private_postgres.start()
    wait_for(lambda: job.get_status(refresh=True) == "finished", 60, what="retried job finished")
    stats = database_stats(open_database(url))
    assert (stats["organization"], stats["location"], stats["source_record"]) == (2, 2, 2)


def test_a_worker_started_while_the_database_is_down_waits_for_it(
    redis: Redis,
    worker_env: dict[str, str],
    private_postgres: PostgresServer,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    url = private_postgres.create_database()
    private_postgres.stop()
    start_workers(1, {**worker_env, "DATABASE_URL": url}, tmp_path, workers)
    wait_for(lambda: "reconciler start: database unavailable" in workers[0].log(), 30, what="start warning")
    job = enqueue_chained(
        redis, RECONCILER_QUEUE, RECONCILER_JOB_FUNC, job_result(1, aligned_record(1)), "early", 3600
    )
    wait_for(lambda: job.get_status(refresh=True) == "scheduled", 60, what="job scheduled for retry")

    private_postgres.start()
    wait_for(lambda: job.get_status(refresh=True) == "finished", 60, what="retried job finished")
    assert database_stats(open_database(url))["organization"] == 1
    assert workers[0].proc.poll() is None
