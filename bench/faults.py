"""Fault injection at full size: N distinct records through the whole pipeline per fault.

    .venv/bin/python -m bench.faults [--jobs 1000] [--runs 1] [--only sigkill,redis-kill,...] [--output F]

The same harness as ``tests/integration/test_faults.py`` (real supervisors, the scripted
provider over the offline ``rules`` one, a dedicated redis-server with AOF and
``appendfsync always``), with N LLM jobs per run (3 N pipeline jobs with the chained reconciler
and recorder jobs). After each run every job id is looked up across RQ's queues, intermediate
lists and registries, and the outputs are counted:

* lost — jobs in no place, or not finished/failed when the run gave up (15 min);
* duplicated — jobs in more than one place, recorder files beyond one per job, database rows
  beyond those the distinct records plan to;
* failed — jobs that ended failed (each with a reason; SIGKILL may exhaust a job's 3 retries);
* time to recover — per fault, see ``RECOVERY`` below; max over the run's events.

Prints a table and writes bench/results/faults.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from tests.support.faults import (
    Chaos,
    Ledger,
    Pipeline,
    expected_rows,
    ledger,
    read_outputs,
    retries_used,
    synthetic_records,
    wait_progress,
)
from tests.support.processes import wait_for

from pirate_worker.contracts.queues import LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "faults.json"
GIVE_UP_S = 900.0

RECOVERY = {
    "sigkill": "SIGKILL of a busy worker → its job running again (max over kills)",
    "sigterm": "SIGTERM → supervisor exited 0 after draining (max over 4 supervisors)",
    "redis-kill": "redis-server back → first job started again",
    "redis-shutdown": "redis-server back → first job started again",
    "provider-flap": "longest stall between LLM job starts (blocks are 1.5-2 s)",
}
FAULTS = {
    "sigkill": "SIGKILL random workers every 1-2 s",
    "sigterm": "SIGTERM scale-in of 4 of 7 supervisors",
    "redis-kill": "redis-server SIGKILL, restart after 3 s",
    "redis-shutdown": "redis-server SHUTDOWN, restart after 3 s",
    "provider-flap": "provider ok / 429 / 401 / transient",
}


def _started_at(connection: Redis, job_ids: list[str]) -> dict[str, datetime]:
    jobs = Job.fetch_many(job_ids, connection=connection, serializer=JSONSerializer)
    return {j.id: j.started_at for j in jobs if j is not None and j.started_at is not None}


def _epoch(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def run_sigkill(pipeline: Pipeline, client: Redis, jobs: int) -> dict[str, Any]:
    pipeline.start_workers()
    pipeline.script(*["sleep:0.3"] * (2 * jobs))
    llm_ids = pipeline.submit(synthetic_records(jobs))
    hits: list[tuple[float, str]] = []

    def strike(rng: Any) -> str | None:
        role = rng.choice((LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE))
        workers = pipeline.supervisors[role]
        worker = rng.choice(workers)
        try:
            _, status = worker.json("/worker-status")
        except (OSError, ValueError):
            return None
        alive = [w for w in status["workers"] if w["alive"]]
        if not alive:
            return None
        target = rng.choice(alive)
        try:
            os.kill(target["pid"], signal.SIGKILL)
        except ProcessLookupError:
            return None
        if target.get("current_job"):
            hits.append((time.time(), target["current_job"]))
        return f"SIGKILL {target['name']}"

    with Chaos(strike, interval=(1.0, 2.0), seed=11) as chaos:
        wait_progress(client, jobs * 9 // 10, GIVE_UP_S, "nine tenths recorded")
    book = _settle(pipeline, client, llm_ids)
    started = _started_at(client, [job_id for _, job_id in hits])
    recoveries = [_epoch(started[j]) - t for t, j in hits if j in started and _epoch(started[j]) >= t]
    return {
        "book": book,
        "events": len(chaos.done),
        "busy_kills": len(hits),
        "recover_s": recoveries,
    }


def run_sigterm(pipeline: Pipeline, client: Redis, jobs: int) -> dict[str, Any]:
    pipeline.start_workers({LLM_QUEUE: (3, 1), RECONCILER_QUEUE: (2, 1), RECORDER_QUEUE: (2, 1)})
    pipeline.script(*["sleep:0.3"] * (jobs * 6 // 10))
    llm_ids = pipeline.submit(synthetic_records(jobs))
    wait_progress(client, jobs // 4, GIVE_UP_S, "a quarter recorded")
    leaving = [*pipeline.supervisors[LLM_QUEUE][:2], pipeline.supervisors[RECONCILER_QUEUE][0]]
    leaving.append(pipeline.supervisors[RECORDER_QUEUE][0])
    in_flight = ledger(client, llm_ids).in_place("started")
    sent = time.monotonic()
    for worker in leaving:
        worker.proc.send_signal(signal.SIGTERM)
    drains, codes = [], []
    for worker in leaving:
        codes.append(worker.proc.wait(timeout=300))
        drains.append(time.monotonic() - sent)
    for role, workers in pipeline.supervisors.items():
        pipeline.supervisors[role] = [w for w in workers if w not in leaving]
    pipeline.retired += leaving
    book = _settle(pipeline, client, llm_ids)
    used = sum(n or 0 for n in retries_used(client, book.expected).values())
    in_flight_failed = sum(1 for job_id in in_flight if book.place(job_id) != "finished")
    return {
        "book": book,
        "events": len(leaving),
        "exit_codes": codes,
        "in_flight": len(in_flight),
        "in_flight_failed": in_flight_failed,
        "retries_used": used,
        "recover_s": drains,
    }


def run_redis(how: str) -> Callable[[Pipeline, Redis, int], dict[str, Any]]:
    def run(pipeline: Pipeline, client: Redis, jobs: int) -> dict[str, Any]:
        pipeline.start_workers()
        pipeline.script(*["sleep:0.05"] * (2 * jobs))
        llm_ids = pipeline.submit(synthetic_records(jobs))
        wait_progress(client, jobs // 3, GIVE_UP_S, "a third recorded")
        pipeline.server.kill() if how == "kill" else pipeline.server.shutdown()
        time.sleep(3)
        pipeline.server.start()
        back = time.time()
        healthy = _healthy_after(pipeline)
        book = _settle(pipeline, client, llm_ids)
        starts = [_epoch(s) for s in _started_at(client, book.expected).values()]
        first = min((s for s in starts if s >= back), default=None)
        return {
            "book": book,
            "events": 1,
            "supervisors_healthy_s": healthy,
            "recover_s": [first - back] if first is not None else [],
        }

    return run


def run_provider_flap(pipeline: Pipeline, client: Redis, jobs: int) -> dict[str, Any]:
    pipeline.env.update(AUTH_RETRY_DELAY="2", CLAUDE_QUOTA_RETRY_DELAY="1", CLAUDE_QUOTA_MAX_DELAY="2")
    rounds = jobs // 40
    flaps = ["quota_in:1.5", "auth", "transient:1", "quota"]
    steps = [step for _ in range(rounds) for flap in flaps for step in (*["ok"] * 8, flap)]
    pipeline.start_workers()
    pipeline.script(*steps)
    llm_ids = pipeline.submit(synthetic_records(jobs))
    book = _settle(pipeline, client, llm_ids)
    used = sum(n or 0 for n in retries_used(client, book.expected).values())
    starts = sorted(_epoch(s) for s in _started_at(client, llm_ids).values())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    return {
        "book": book,
        "events": 3 * rounds,
        "transient_errors": rounds,
        "retries_used": used,
        "recover_s": [max(gaps)] if gaps else [],
    }


def _healthy_after(pipeline: Pipeline) -> float:
    back = time.monotonic()
    workers = [w for ws in pipeline.supervisors.values() for w in ws]
    wait_for(lambda: all(w.health_code() == 200 for w in workers), 120, 0.05, "supervisors healthy")
    return time.monotonic() - back


def _settle(pipeline: Pipeline, client: Redis, llm_ids: list[str]) -> Ledger:
    try:
        return pipeline.settle(client, llm_ids, GIVE_UP_S)
    except AssertionError:
        return ledger(client, llm_ids)  # counted as lost below


RUNNERS: dict[str, Callable[[Pipeline, Redis, int], dict[str, Any]]] = {
    "sigkill": run_sigkill,
    "sigterm": run_sigterm,
    "redis-kill": run_redis("kill"),
    "redis-shutdown": run_redis("shutdown"),
    "provider-flap": run_provider_flap,
}


def measure(fault: str, jobs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"bench-faults-{fault}-") as tmp:
        pipeline = Pipeline(Path(tmp)).start_redis()
        client = pipeline.client()
        started = time.monotonic()
        try:
            result = RUNNERS[fault](pipeline, client, jobs)
            book: Ledger = result.pop("book")
            outputs = read_outputs(pipeline.output_dir, pipeline.database)
            lost = len(book.missing) + sum(
                1 for j in book.expected if book.places.get(j) and book.place(j) not in ("finished", "failed")
            )
            reconciled = [
                r
                for r, j in zip(synthetic_records(jobs), book.llm_ids, strict=True)
                if book.place(f"{j}-reconcile") == "finished"
            ]
            expected = expected_rows(reconciled)
            extra_rows = sum(max(0, outputs.db_rows.get(t, 0) - n) for t, n in expected.items())
            extra_rows += max(0, outputs.db_rows.get("source_record", 0) - len(reconciled))
            duplicated = (
                len(book.duplicated)
                + (len(outputs.recorder_files) - len(set(outputs.recorded_ids)))
                + extra_rows
            )
            return {
                "fault": fault,
                "jobs": jobs,
                "pipeline_jobs": len(book.expected),
                "finished": book.count("finished"),
                "failed": book.count("failed"),
                "lost": lost,
                "duplicated": duplicated,
                "recorder_files": len(outputs.recorder_files),
                "summary_total": outputs.summary_total,
                "seconds": round(time.monotonic() - started, 1),
                **{k: (_round(v) if k == "recover_s" else v) for k, v in result.items()},
            }
        finally:
            client.close()
            pipeline.stop()


def _round(values: list[float]) -> list[float]:
    return [round(v, 2) for v in values]


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| fault | runs | jobs (LLM / pipeline) | lost | duplicated | failed "
        "| time to recover (max; median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for fault in FAULTS:
        runs = [r for r in results if r["fault"] == fault]
        if not runs:
            continue
        recover = [v for r in runs for v in r["recover_s"]]
        shown = f"{max(recover):.1f} s; {statistics.median(recover):.1f} s" if recover else "—"
        lines.append(
            f"| {FAULTS[fault]} | {len(runs)} | {sum(r['jobs'] for r in runs)} / "
            f"{sum(r['pipeline_jobs'] for r in runs)} | {sum(r['lost'] for r in runs)} | "
            f"{sum(r['duplicated'] for r in runs)} | {sum(r['failed'] for r in runs)} | {shown} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default=",".join(RUNNERS), help="comma-separated faults")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        for fault in args.only.split(","):
            result = measure(fault, args.jobs)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps({"jobs": args.jobs, "runs": args.runs, "recovery": RECOVERY, "results": results}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
