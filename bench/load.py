"""Load: 20,000 queued LLM jobs, 20 worker processes, and an operator-side demand reader.

    .venv/bin/python -m bench.load [--jobs 20000] [--workers 20] [--interval 2]

One private redis-server. An operator-side reader (its own process, as in the operator: one
client, ``read_pool_observation`` every ``--interval`` seconds) runs from the start. The bench
enqueues ``--jobs`` distinct records (content store on, as in production) while the reader
watches the queue grow from 0, then starts ``pirate-workers worker --role llm --count N`` (the
offline rules provider) and samples every interval until every job has finished:

* the RSS of the supervisor and of each worker process;
* per reader cycle: its duration, the Redis commands and round trips it sent (counted by its own
  client, so the workers' traffic does not blur them), what it saw, and its own RSS.

Checks at the end: every job finished, none failed, none left started, no reader cycle failed.
Writes ``bench/results/load.json`` and prints a summary. The chained reconciler and recorder jobs
are left queued (40,000 more): they make the reader's job harder, not easier.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from tests.support.load import bench_worker_env, counting_client, rss_kib, synthetic_records, tree_rss

from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import LLM_QUEUE
from pirate_worker.runtime.embedded_redis import EmbeddedRedis, free_port
from pirate_worker.services.content_store import RedisContentStore
from pirate_worker.services.queueing import queue
from pirate_worker.services.submission import submit_records

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load.json"
ENQUEUE_BATCH = 500


def reader_main(url: str, interval: float, samples: Any, stop: Any) -> None:
    """The operator-side demand reader: one cycle every ``interval`` until ``stop`` is set."""
    from pirate_operator.api import PoolSpec, effective_roles
    from pirate_operator.sources import read_pool_observation
    from pirate_operator.sources.redis_client import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S

    roles = effective_roles(
        PoolSpec.model_validate({"image": "x", "redis": {"url": url}, "provider": {"name": "rules"}})
    )
    # The operator's client options (open_redis), on a connection class that counts commands.
    client, count = counting_client(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=SOCKET_TIMEOUT_S, max_connections=16
    )
    started = time.monotonic()
    while not stop.is_set():
        before = (count.commands, count.round_trips)
        began = time.perf_counter()
        try:
            seen = read_pool_observation(client, roles, datetime.now(UTC), provider="rules")
            error = None
        except Exception as exc:  # reported, and counted as a failed cycle
            seen, error = None, repr(exc)
        took = time.perf_counter() - began
        sample = {
            "t": round(time.monotonic() - started, 2),
            "ms": round(took * 1000, 2),
            "commands": count.commands - before[0],
            "round_trips": count.round_trips - before[1],
            "rss_kib": rss_kib(os.getpid()),
            "error": error,
        }
        if seen is not None:
            llm = seen.roles["llm"]
            sample.update(
                queued={name: reading.observation.queued for name, reading in seen.roles.items()},
                llm_busy=llm.observation.busy_workers,
                llm_workers=sum(p.total for p in llm.pods.values()),
            )
        samples.put(sample)
        stop.wait(max(0.0, interval - took))


def enqueue(url: str, jobs: int) -> float:
    connection = connect(url)
    store = RedisContentStore(connection, 3600)
    records = synthetic_records(jobs)
    began = time.monotonic()
    for start in range(0, jobs, ENQUEUE_BATCH):
        report = submit_records(connection, store, records[start : start + ENQUEUE_BATCH], ttl_s=3600)
        assert not report.deduplicated, "synthetic records must be distinct"
    connection.close()
    return time.monotonic() - began


def start_workers(url: str, workers: int, folder: Path) -> subprocess.Popen[bytes]:
    env = bench_worker_env(url, folder, free_port())
    command = [str(Path(sys.executable).parent / "pirate-workers"), "worker", "--role", "llm"]
    log = (folder / "workers.log").open("wb")
    return subprocess.Popen(
        [*command, "--count", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )


def growth(timeline: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """Per process below the supervisor: median RSS while the first quarter of the jobs finished
    against the median while the last quarter did (only processes alive in both)."""
    first = [t["rss_kib_by_pid"] for t in timeline if 0 < t["finished"] <= total // 4]
    last = [t["rss_kib_by_pid"] for t in timeline if t["finished"] >= total * 3 // 4]
    pids = {pid for sample in first for pid in sample} & {pid for sample in last for pid in sample}
    pairs = {
        pid: (
            statistics.median(s[pid] for s in first if pid in s),
            statistics.median(s[pid] for s in last if pid in s),
        )
        for pid in pids
    }
    if not pairs:
        return {"processes": 0}
    return {
        "processes": len(pairs),
        "median_first_quarter": statistics.median(a for a, _ in pairs.values()),
        "median_last_quarter": statistics.median(b for _, b in pairs.values()),
        "max_growth_kib": max(b - a for a, b in pairs.values()),
        "max_growth_ratio": round(max(b / a for a, b in pairs.values()), 3),
    }


def run(jobs: int, workers: int, interval: float, deadline_s: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pirate-load-"))
    server = EmbeddedRedis(data_dir=folder / "redis").start()
    redis = Redis.from_url(server.url)
    ctx = multiprocessing.get_context("spawn")
    samples, stop = ctx.Queue(), ctx.Event()
    reader = ctx.Process(target=reader_main, args=(server.url, interval, samples, stop), daemon=True)
    reader.start()
    timeline: list[dict[str, Any]] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(3 * interval)  # a few idle cycles: the reader's cost at queue length 0
        enqueue_s = enqueue(server.url, jobs)
        time.sleep(2 * interval)  # cycles at the full queue, before any worker registers
        llm = queue(redis, LLM_QUEUE)
        proc = start_workers(server.url, workers, folder)
        began = time.monotonic()
        finished = 0
        while finished < jobs:
            if time.monotonic() - began > deadline_s:
                raise SystemExit(f"only {finished} of {jobs} jobs finished in {deadline_s:.0f} s")
            if proc.poll() is not None:
                raise SystemExit(f"workers exited with {proc.returncode}; see {folder / 'workers.log'}")
            finished = llm.finished_job_registry.get_job_count(cleanup=False)
            sizes = tree_rss(proc.pid)
            children = {pid: kib for pid, kib in sizes.items() if pid != proc.pid}
            timeline.append(
                {
                    "t": round(time.monotonic() - began, 1),
                    "finished": finished,
                    "queued": llm.count,
                    "supervisor_rss_kib": sizes.get(proc.pid),
                    "worker_processes": len(children),
                    "workers_rss_kib": sum(children.values()),
                    "max_worker_rss_kib": max(children.values(), default=0),
                    "rss_kib_by_pid": children,
                }
            )
            time.sleep(interval)
        run_s = time.monotonic() - began
        failed = llm.failed_job_registry.get_job_count(cleanup=False)
        started = llm.started_job_registry.get_job_count(cleanup=False)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        stop.set()
        reader.join(timeout=30)
        redis.close()
        server.stop()
    cycles = []
    while not samples.empty():
        cycles.append(samples.get())
    return summarize(jobs, workers, interval, enqueue_s, run_s, failed, started, timeline, cycles)


def summarize(
    jobs: int,
    workers: int,
    interval: float,
    enqueue_s: float,
    run_s: float,
    failed: int,
    started: int,
    timeline: list[dict[str, Any]],
    cycles: list[dict[str, Any]],
) -> dict[str, Any]:
    # The first cycle also connects (HELLO, CLIENT SETINFO): reported in the list, not in the figures.
    ok = [c for c in cycles[1:] if c["error"] is None]
    by_workers: dict[str, dict[str, Any]] = {}
    for label, chosen in (
        ("no workers registered", [c for c in ok if c.get("llm_workers") == 0]),
        (f"{workers} workers registered", [c for c in ok if c.get("llm_workers") == workers]),
    ):
        if chosen:
            queued = [c["queued"]["llm"] for c in chosen]
            by_workers[label] = {
                "cycles": len(chosen),
                "llm_queued_range": [min(queued), max(queued)],
                "commands": sorted({c["commands"] for c in chosen}),
                "round_trips": sorted({c["round_trips"] for c in chosen}),
                "ms_p50": statistics.median(c["ms"] for c in chosen),
                "ms_max": max(c["ms"] for c in chosen),
            }
    reader_rss = [c["rss_kib"] for c in cycles if c["rss_kib"]]
    return {
        "jobs": jobs,
        "workers": workers,
        "interval_s": interval,
        "enqueue_s": round(enqueue_s, 1),
        "run_s": round(run_s, 1),
        "jobs_per_s": round(jobs / run_s, 1),
        "failed": failed,
        "left_started": started,
        "reader": {
            "cycles": len(cycles),
            "failed_cycles": sum(c["error"] is not None for c in cycles),
            "by_registered_workers": by_workers,
            "ms_p95": round(statistics.quantiles([c["ms"] for c in ok], n=20)[-1], 2)
            if len(ok) > 1
            else None,
            "rss_kib": {"first": reader_rss[0], "last": reader_rss[-1], "max": max(reader_rss)},
        },
        "worker_rss_kib": {
            "per_process": growth(timeline, jobs),
            "max_process": max(t["max_worker_rss_kib"] for t in timeline),
            "all_workers_max": max(t["workers_rss_kib"] for t in timeline),
            "supervisor_max": max(t["supervisor_rss_kib"] or 0 for t in timeline),
        },
        "timeline": timeline,
        "reader_cycles": cycles,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.jobs, args.workers, args.interval, args.deadline)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    reader, memory = result["reader"], result["worker_rss_kib"]
    lines = [
        f"{args.jobs} jobs, {args.workers} worker processes: "
        f"{result['run_s']} s, {result['jobs_per_s']} jobs/s",
        f"failed {result['failed']}, left started {result['left_started']}, "
        f"reader cycles {reader['cycles']} ({reader['failed_cycles']} failed)",
    ]
    for label, f in reader["by_registered_workers"].items():
        lines.append(
            f"reader, {label}: llm queued {f['llm_queued_range']}, commands {f['commands']}, "
            f"round trips {f['round_trips']}, p50 {f['ms_p50']} ms, max {f['ms_max']} ms"
        )
    lines.append(f"reader RSS KiB {reader['rss_kib']}")
    lines.append(
        f"worker RSS KiB per process {memory['per_process']}, max process {memory['max_process']}, "
        f"all workers max {memory['all_workers_max']}"
    )
    print("\n".join(lines))
    if result["failed"] or result["left_started"] or reader["failed_cycles"]:
        raise SystemExit("load run had failures")


if __name__ == "__main__":
    main()
