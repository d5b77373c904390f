"""Trivial jobs per second per worker process: our runtime vs stock ``rq worker`` (forking) and
RQ's ``SimpleWorker``, measured in the same run against the same private redis-server.

    .venv/bin/python -m bench.throughput [--jobs 3000] [--repeat 3]

Each run enqueues N jobs with RQ's JSON serializer, starts one worker process in burst mode and
times from the first job's start to the last job's end (from RQ's own timestamps, so process
start-up is not counted). After each run it checks RQ's registries: every job finished, nothing
left started or failed. Prints jobs/s per runtime and ratios; writes bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from pirate_worker.runtime.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "bench"
SERIALIZER = "rq.serializers.JSONSerializer"


def runtimes(python: Path) -> dict[str, list[str]]:
    bin_dir = python.parent
    rq = [str(bin_dir / "rq"), "worker", "--burst", "-S", SERIALIZER, "--logging_level", "WARNING"]
    return {
        "rq worker (forking)": [*rq, "-w", "rq.Worker", QUEUE],
        "rq SimpleWorker": [*rq, "-w", "rq.SimpleWorker", QUEUE],
        "pirate-workers": [str(bin_dir / "pirate-workers"), "worker", "--role", "bench", "--queues", QUEUE,
                           "--count", "1", "--burst", "--health-port", "0"],
    }  # fmt: skip


def run_once(redis: Redis, url: str, cmd: list[str], jobs: int) -> tuple[float, float]:
    redis.flushall()
    queue = Queue(QUEUE, connection=redis, serializer=JSONSerializer)
    with redis.pipeline() as pipe:
        ids = [
            queue.enqueue_call("bench.trivial.echo", args=(i,), result_ttl=600, timeout=60, pipeline=pipe).id
            for i in range(jobs)
        ]
        pipe.execute()
    env = {**os.environ, "REDIS_URL": url, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    redis.config_resetstat()
    subprocess.run(cmd, env=env, cwd=ROOT, check=True, timeout=600, stdout=subprocess.DEVNULL)
    commands = sum(int(stat["calls"]) for stat in redis.info("commandstats").values())
    fetched = Job.fetch_many(ids, connection=redis, serializer=JSONSerializer)
    done = [j for j in fetched if j is not None and j.get_status(refresh=False) == "finished"]
    assert len(done) == jobs, f"{cmd[0]}: only {len(done)}/{jobs} finished"
    assert queue.started_job_registry.get_job_count(cleanup=False) == 0, "jobs left in the started registry"
    assert queue.failed_job_registry.get_job_count(cleanup=False) == 0, "failed jobs"
    assert queue.finished_job_registry.get_job_count(cleanup=False) == jobs, "finished registry incomplete"
    start = min(j.started_at for j in done if j.started_at)
    end = max(j.ended_at for j in done if j.ended_at)
    return jobs / (end - start).total_seconds(), commands / jobs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    commands: dict[str, float] = {}
    with EmbeddedRedis() as server:
        redis = Redis.from_url(server.url)
        for _ in range(args.repeat):
            # Interleaved, so a noisy neighbour slows every runtime alike rather than one of them.
            for name, cmd in runtimes(Path(sys.executable)).items():
                rate, per_job = run_once(redis, server.url, cmd, args.jobs)
                results.setdefault(name, []).append(rate)
                commands[name] = per_job
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    simple = medians["rq SimpleWorker"]
    forking = medians["rq worker (forking)"]
    print(
        f"{'runtime':<22} {'jobs/s (median)':>16} {'vs SimpleWorker':>16} {'vs forking':>11} {'cmds/job':>9}"
    )
    for name, rate in medians.items():
        print(
            f"{name:<22} {rate:>16.0f} {rate / simple:>15.2f}x"
            f" {rate / forking:>10.2f}x {commands[name]:>9.1f}"
        )
    out = ROOT / "bench" / "results" / "throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "jobs": args.jobs,
        "repeat": args.repeat,
        "runs": results,
        "median_jobs_per_s": medians,
        "redis_commands_per_job": commands,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
