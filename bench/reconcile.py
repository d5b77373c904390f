"""Reconciled records per second per worker, on SQLite and PostgreSQL in the same run.

    .venv/bin/python -m bench.reconcile [--records 400] [--workers 1,4] [--repeat 3]

For each backend and worker count: a fresh database (schema migrated first, so start-up is not
timed), W real ``pirate-workers worker --role reconciler`` processes already up, then N aligned
records (50 organizations, each record with its own location, 2 services, phones, schedule)
enqueued as reconciler jobs, timed from the first job's start to the last job's end (RQ's
timestamps). Then the same N records again as new jobs: the *unchanged* pass, which matches
everything and writes no HSDS row. Every run checks that all jobs finished and the row counts are
exact. PostgreSQL is a private cluster (tests/support/postgres.py) on this machine, fsync off, so
the figures compare the reconciler's work, not disks. Writes bench/results/reconcile.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from tests.support.hsds_records import aligned_record, expected_rows, job_result
from tests.support.postgres import PostgresServer
from tests.support.processes import WorkerProcess, wait_for

from pirate_worker.contracts.queues import DEFAULT_JOB_TIMEOUTS, RECONCILER_JOB_FUNC, RECONCILER_QUEUE
from pirate_worker.db.engine import create_database_engine
from pirate_worker.db.migrate import upgrade
from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from pirate_worker.services.queueing import queue
from pirate_worker.services.reconciler import database_stats

ROOT = Path(__file__).resolve().parents[1]


def timed_pass(redis: Redis, records: int, tag: str) -> float:
    """Enqueue ``records`` jobs, wait for all, return records/s from RQ's own timestamps."""
    ids = []
    target = queue(redis, RECONCILER_QUEUE)
    # One pipeline, so the workers see all jobs at once and enqueueing never paces them.
    with redis.pipeline() as pipe:
        for i in range(records):
            job = target.enqueue_call(
                RECONCILER_JOB_FUNC,
                args=(job_result(i, aligned_record(i)),),
                job_id=f"{tag}-{i}",
                timeout=DEFAULT_JOB_TIMEOUTS[RECONCILER_QUEUE],
                result_ttl=3600,
                pipeline=pipe,
            )
            ids.append(job.id)
        pipe.execute()

    def finished() -> list[Job] | None:
        jobs = Job.fetch_many(ids, connection=redis, serializer=JSONSerializer)
        states = [j.get_status(refresh=False).value if j is not None else "missing" for j in jobs]
        if "failed" in states:
            raise RuntimeError(f"{tag}: {states.count('failed')} jobs failed")
        return [j for j in jobs if j is not None] if states.count("finished") == records else None

    done = wait_for(finished, timeout=1200, interval=0.2, what=f"{tag}: {records} jobs")
    start = min(j.started_at for j in done if j.started_at)
    end = max(j.ended_at for j in done if j.ended_at)
    return records / (end - start).total_seconds()


def run_once(redis: Redis, redis_url: str, database_url: str, workers: int, records: int) -> dict[str, float]:
    redis.flushall()
    upgrade(create_database_engine(database_url))
    env = {"REDIS_URL": redis_url, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING", "OUTPUT_DIR": "/tmp"}
    with tempfile.TemporaryDirectory() as tmp:
        started = [
            WorkerProcess.start("reconciler", 1, env, Path(tmp), scripted=False) for _ in range(workers)
        ]
        try:
            new = timed_pass(redis, records, "new")
            unchanged = timed_pass(redis, records, "again")
        finally:
            for worker in started:
                worker.stop()
    stats = database_stats(create_database_engine(database_url))
    if stats != expected_rows(records):
        raise RuntimeError(f"wrong rows after the run: {stats}")
    return {"new": new, "unchanged": unchanged}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--workers", default="1,4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    runs: dict[str, dict[str, dict[str, list[float]]]] = {}
    with EmbeddedRedis() as server, PostgresServer() as postgres, tempfile.TemporaryDirectory() as tmp:
        redis = Redis.from_url(server.url)
        for repeat in range(args.repeat):
            # Interleaved, so a noisy neighbour slows every configuration alike.
            for workers in counts:
                urls = {
                    "sqlite": f"sqlite:///{tmp}/bench-{repeat}-{workers}.db",
                    "postgresql": postgres.create_database("bench"),
                }
                for backend, url in urls.items():
                    rates = run_once(redis, server.url, url, workers, args.records)
                    for kind, rate in rates.items():
                        runs.setdefault(backend, {}).setdefault(str(workers), {}).setdefault(kind, []).append(
                            rate
                        )
    report: dict[str, Any] = {"records": args.records, "repeat": args.repeat, "runs": runs, "median": {}}
    header = ("backend", "workers", "new rec/s", "per worker", "unchanged rec/s", "per worker")
    print("{:<11} {:>7} {:>10} {:>11} {:>16} {:>11}".format(*header))
    for backend, by_workers in runs.items():
        for workers, kinds in by_workers.items():
            new, same = statistics.median(kinds["new"]), statistics.median(kinds["unchanged"])
            n = int(workers)
            report["median"].setdefault(backend, {})[workers] = {
                "new_records_per_s": new,
                "new_records_per_s_per_worker": new / n,
                "unchanged_records_per_s": same,
                "unchanged_records_per_s_per_worker": same / n,
            }
            print(f"{backend:<11} {n:>7} {new:>10.0f} {new / n:>11.0f} {same:>16.0f} {same / n:>11.0f}")
    out = ROOT / "bench" / "results" / "reconcile.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
