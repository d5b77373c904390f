"""LLM capacity: calls in flight per GiB of worker memory, and pacing to a provider's rate limit.

    .venv/bin/python -m bench.llm_capacity [--calls 360] [--limit-per-minute 180]

Real ``pirate-workers worker --role llm`` processes with the official anthropic SDK against the
local wire server (``tests/support/llm_server.py``), one private redis-server. Both parts measure
today's runtime (the workers of ``--baseline-ref``, checked out into a temporary worktree: one
call per process, no pacing, a 429 spends one of the job's three retries) and this checkout's in
the same run:

1. **Memory**: one worker process; the server answers after 2 s, so calls pile up. At the peak
   of calls in flight, the RSS of the whole process tree (supervisor, worker, its scheduler):
   calls in flight per GiB, for ``LLM_CONCURRENCY`` 1 and 32.
2. **Pacing**: the server enforces ``--limit-per-minute`` (a bucket holding 10 s of refill, as a
   provider enforcing its minute limit over shorter intervals does) with Anthropic's headers and
   answers after 0.5-2 s. Today's runtime runs 8 processes (about 2x the limit unpaced); the new
   one 2 processes x 20 calls (about 10x). Each drains ``--calls`` distinct records. Reported:
   429s per 1,000 calls, and throughput as a fraction of what the limit allowed over the run
   (the bucket's start plus the refill over the elapsed time), jobs failed or left behind, and
   retries spent.

Writes ``bench/results/llm_capacity.json`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer
from tests.support.llm_server import LLMServer, RequestLimit
from tests.support.load import bench_worker_env, synthetic_records, tree_rss

from pirate_worker.contracts import keys
from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import LLM_QUEUE
from pirate_worker.runtime.embedded_redis import EmbeddedRedis, free_port
from pirate_worker.services.content_store import RedisContentStore
from pirate_worker.services.queueing import queue
from pirate_worker.services.submission import submit_records

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "llm_capacity.json"
#: The last commit before #16's runtime (one call per process, no pacing, a 429 spends a retry).
BASELINE_REF = "b1a6c07"
GIB_KIB = 1024 * 1024


def checkout(ref: str, where: Path) -> Path:
    """A detached worktree of ``ref`` (the baseline's source), removed by the caller."""
    subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=ROOT, check=True)
    return where


def enqueue(url: str, count: int, offset: int) -> list[str]:
    connection = connect(url)
    records = synthetic_records(offset + count)[offset:]
    report = submit_records(connection, RedisContentStore(connection, 3600), records, ttl_s=3600)
    connection.close()
    assert not report.deduplicated
    return [item.job_id for item in report.enqueued]


def start_workers(
    url: str,
    server: LLMServer,
    folder: Path,
    processes: int,
    concurrency: int,
    pacing: bool,
    source: Path | None = None,
) -> subprocess.Popen[bytes]:
    """``pirate-workers worker --role llm``; from ``source`` (a checkout of another commit) if set."""
    env = {
        **bench_worker_env(url, folder, free_port()),
        "LLM_PROVIDER": "anthropic",
        "LLM_MODEL_NAME": "claude-bench",
        "ANTHROPIC_API_KEY": "sk-ant-bench-capacity",
        "ANTHROPIC_BASE_URL": server.url,
        "LLM_TIMEOUT_S": "60",
        "LLM_CONCURRENCY": str(concurrency),
        "LLM_RATE_PACING": "true" if pacing else "false",
    }
    command = [sys.executable, "-m", "pirate_worker", "worker", "--role", "llm"]
    if source is not None:
        # The checkout's packages come first on the path (the venv's own are path entries too).
        env["PYTHONPATH"] = f"{source / 'worker'}:{source / 'operator'}"
    log = (folder / f"workers-{processes}x{concurrency}.log").open("wb")
    return subprocess.Popen(
        [*command, "--count", str(processes)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def statuses(redis: Redis, job_ids: list[str]) -> list[str]:
    with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(f"rq:job:{job_id}", "status")
        return [(raw or b"").decode() for raw in pipe.execute()]


def memory(
    url: str, folder: Path, concurrency: int, offset: int, source: Path | None = None
) -> dict[str, Any]:
    """Calls in flight per GiB of the process tree, at the peak of calls in flight."""
    redis = Redis.from_url(url)
    redis.flushall()
    job_ids = enqueue(url, concurrency * 2, offset)
    with LLMServer(latency=(2.0, 2.0)) as server:
        proc = start_workers(url, server, folder, 1, concurrency, pacing=True, source=source)
        peak_rss_kib, peak_calls = 0, 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and set(statuses(redis, job_ids)) != {"finished"}:
            calls = server.in_flight
            rss = sum(tree_rss(proc.pid).values())
            if calls > peak_calls:
                peak_calls, peak_rss_kib = calls, rss
            elif calls == peak_calls:
                peak_rss_kib = max(peak_rss_kib, rss)
            time.sleep(0.05)
        stop(proc)
    redis.close()
    return {
        "runtime": "today" if source is not None else "new",
        "concurrency": concurrency,
        "calls_in_flight": peak_calls,
        "tree_rss_mib": round(peak_rss_kib / 1024, 1),
        "calls_per_gib": round(peak_calls / (peak_rss_kib / GIB_KIB), 1) if peak_rss_kib else None,
    }


def pacing(
    url: str,
    folder: Path,
    calls: int,
    per_minute: int,
    fleet: tuple[int, int],
    paced: bool,
    offset: int,
    source: Path | None = None,
) -> dict[str, Any]:
    """Drain ``calls`` records with ``fleet`` = (processes, calls per process) under the limit,
    with this checkout's workers or those of ``source``."""
    processes, concurrency = fleet
    redis = Redis.from_url(url)
    redis.flushall()
    job_ids = enqueue(url, calls, offset)
    rate = per_minute / 60.0
    capacity = max(int(rate * 10), 1)
    limit = RequestLimit(per_minute=per_minute, capacity=capacity)
    with LLMServer(limit=limit, latency=(0.5, 2.0)) as server:
        proc = start_workers(url, server, folder, processes, concurrency, pacing=paced, source=source)
        began = time.monotonic()
        first_call: float | None = None
        deadline = began + calls / rate * 3 + 120
        while time.monotonic() < deadline:
            if first_call is None and server.calls():
                first_call = time.monotonic()
            done = statuses(redis, job_ids)
            if all(s in ("finished", "failed") for s in done):
                break
            time.sleep(0.2)
        ended = time.monotonic()
        stop(proc)
        answered = server.calls() - server.rate_limited
        refused = server.rate_limited
        max_in_flight = server.max_in_flight
    done = statuses(redis, job_ids)
    retries = [Job.fetch(j, connection=redis, serializer=JSONSerializer).retries_left for j in job_ids]
    elapsed = ended - (first_call or began)
    allowed = capacity + rate * elapsed
    llm = queue(redis, LLM_QUEUE)
    result = {
        "runtime": "today" if source is not None else "new",
        "processes": processes,
        "calls_per_process": concurrency,
        "paced": paced,
        "limit_per_minute": per_minute,
        "bucket_capacity": capacity,
        "unpaced_demand_x_limit": round(processes * concurrency / 1.25 / rate, 1),
        "jobs": calls,
        "finished": done.count("finished"),
        "failed": done.count("failed"),
        "failed_registry": llm.failed_job_registry.count,
        "left_behind": len(job_ids) - done.count("finished") - done.count("failed"),
        "retries_spent": sum(3 - (r or 0) for r in retries),
        "provider_calls": answered + refused,
        "http_429": refused,
        "http_429_per_1000_calls": round(1000 * refused / max(answered + refused, 1), 1),
        "elapsed_s": round(elapsed, 1),
        "throughput_per_s": round(answered / elapsed, 3) if elapsed else None,
        "throughput_vs_limit": round(answered / allowed, 3),
        "max_calls_in_flight": max_in_flight,
        "rate_limited_stat": int(redis.hget(keys.run_stats_key(), "provider_calls:rate_limited") or 0),
    }
    redis.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=360)
    parser.add_argument("--limit-per-minute", type=int, default=180)
    parser.add_argument(
        "--baseline-ref",
        default=BASELINE_REF,
        help="git commit whose workers are 'today' (default: the last one before #16's runtime)",
    )
    args = parser.parse_args()
    server = EmbeddedRedis().start()
    try:
        with tempfile.TemporaryDirectory(prefix="pirate-llm-capacity-") as tmp:
            folder = Path(tmp)
            baseline = checkout(args.baseline_ref, folder / "baseline")
            try:
                mem = [
                    memory(server.url, folder, 1, offset=0, source=baseline),
                    memory(server.url, folder, 32, offset=1000),
                ]
                paced = [
                    pacing(
                        server.url, folder, args.calls, args.limit_per_minute, (8, 1), False, 10_000, baseline
                    ),
                    pacing(server.url, folder, args.calls, args.limit_per_minute, (2, 20), True, 20_000),
                ]
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, check=False)
    finally:
        server.stop()
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline_ref": args.baseline_ref,
        "cpus": os.cpu_count(),
        "memory": mem,
        "calls_per_gib_ratio": round(mem[1]["calls_per_gib"] / mem[0]["calls_per_gib"], 1),
        "pacing": paced,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for row in mem:
        print(
            f"memory  {row['runtime']:>5} LLM_CONCURRENCY={row['concurrency']:>2}: "
            f"{row['calls_in_flight']:>3} calls in flight, "
            f"tree {row['tree_rss_mib']} MiB -> {row['calls_per_gib']} calls/GiB"
        )
    for row in paced:
        print(
            f"pacing  {row['runtime']:>5} ({row['processes']}x{row['calls_per_process']}, "
            f"~{row['unpaced_demand_x_limit']}x the limit unpaced): "
            f"{row['http_429_per_1000_calls']} 429s/1000 calls, throughput {row['throughput_vs_limit']} "
            f"of the limit, failed {row['failed']}, left {row['left_behind']}, "
            f"retries spent {row['retries_spent']}"
        )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
