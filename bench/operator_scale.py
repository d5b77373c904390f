"""Operator cost at scale: CPU seconds per polling cycle and RSS with 100 pools.

    .venv/bin/python -m bench.operator_scale [--pools 100] [--seconds 40] [--kubeconfig FILE]

Runs the real operator (a subprocess) against a real apiserver (``--kubeconfig``/``KUBECONFIG``,
else hack/kube started for the run) and one real redis-server, with ``--pools`` pools at the
default settings (``pollingIntervalSeconds`` 2) in one namespace, in two phases:

* **idle**: no demand anywhere. A cycle reads Redis and decides; nothing is written.
* **active**: every pool has demand (two queued llm jobs, one replica), steady. The decision does
  not change, so each pool's status is refreshed every 10 s (observed counts, memory times)
  instead of every cycle; a changing decision would write in its own cycle.

CPU is the operator process's user + system time from /proc over the measuring window; a
"polling cycle" is one pass over every pool (``pollingIntervalSeconds``), and the per-pool figure
divides by the cycles the operator itself counted. RSS is VmRSS at the end of each phase (VmHWM is
the peak). Prints the figures and writes bench/results/operator_scale.json.

The operator runs from an environment shaped like the operator image: the locked dependencies of
the ``operator`` extra only, the project installed non-editable (synced with uv under
``~/.cache/pirate-workers/operator-env``, as the e2e tests run it). The development environment
also holds the test suite's ``kubernetes`` client, which kopf imports whenever it is installed;
``--dev-env`` measures that instead.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from tests.support.kube import (
    PIRATE_WORKERS,
    Kube,
    OperatorProcess,
    operator_executable,
    poll,
    pool_manifest,
    start_control_plane,
)

from pirate_worker.runtime.embedded_redis import EmbeddedRedis

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "operator_scale.json"
NAMESPACE: Final = "bench-scale"
INTERVAL_S: Final = 2
TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def memory_mib(pid: int) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def ready_pools(kube: Kube) -> int:
    count = 0
    for pool in kube.list_pools(NAMESPACE):
        conditions = (pool.get("status") or {}).get("conditions") or []
        count += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return count


def measure_phase(operator: OperatorProcess, pools: int, seconds: float) -> dict[str, Any]:
    pid = operator.proc.pid
    cycles_before = operator.metric("pirate_operator_cycle_seconds_count") or 0.0
    busy_before = operator.metric("pirate_operator_cycle_seconds_sum") or 0.0
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu, elapsed = cpu_seconds(pid) - cpu_before, time.monotonic() - started
    cycles = (operator.metric("pirate_operator_cycle_seconds_count") or 0.0) - cycles_before
    busy = (operator.metric("pirate_operator_cycle_seconds_sum") or 0.0) - busy_before
    rounds = elapsed / INTERVAL_S
    return {
        "seconds": round(elapsed, 1),
        "pool_cycles": int(cycles),
        "pool_cycles_expected": round(pools * rounds),
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_per_polling_cycle": round(cpu / rounds, 4),
        "cpu_ms_per_pool_cycle": round(1000 * cpu / cycles, 3) if cycles else None,
        "cpu_percent_of_one_core": round(100 * cpu / elapsed, 1),
        "mean_pool_cycle_ms": round(1000 * busy / cycles, 2) if cycles else None,
        **memory_mib(pid),
    }


def run(
    kube: Kube, kubeconfig: Path, pools: int, seconds: float, workdir: Path, executable: Path
) -> dict[str, Any]:
    redis_server = EmbeddedRedis().start()
    kube.create_namespace(NAMESPACE)
    operator = None
    try:
        for index in range(pools):
            kube.create_pool(NAMESPACE, pool_manifest(f"pool-{index:03d}", redis_server.url))
        started = time.monotonic()
        operator = OperatorProcess(
            kubeconfig, NAMESPACE, workdir / "operator.log", executable=executable
        ).wait_healthy(60)
        poll(lambda: ready_pools(kube) == pools, 180, f"{pools} pools Ready", interval=1.0)
        startup = time.monotonic() - started
        time.sleep(2 * INTERVAL_S)
        idle = measure_phase(operator, pools, seconds)
        client = Redis.from_url(redis_server.url)
        queue = Queue("llm", connection=client, serializer=JSONSerializer)
        for _ in range(2):
            queue.enqueue("time.sleep", 0, job_timeout=60)
        poll(
            lambda: all(kube.replicas(NAMESPACE, f"pool-{i:03d}-llm") == 1 for i in range(pools)),
            120,
            "every pool's llm at 1",
            interval=1.0,
        )
        time.sleep(2 * INTERVAL_S)
        active = measure_phase(operator, pools, seconds)
        client.close()
    finally:
        if operator is not None:
            operator.stop(timeout=60)
        kube.purge_namespace(NAMESPACE)
        redis_server.stop()
    return {
        "pools": pools,
        "polling_interval_s": INTERVAL_S,
        "seconds_until_all_ready": round(startup, 1),
        "idle": idle,
        "active": active,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=int, default=100, help="pools to run (default 100)")
    parser.add_argument("--seconds", type=float, default=40.0, help="measuring window per phase")
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="cluster (default: KUBECONFIG or hack/kube)"
    )
    parser.add_argument(
        "--dev-env", action="store_true", help="run the operator from .venv instead of an image-shaped env"
    )
    options = parser.parse_args()
    executable = PIRATE_WORKERS if options.dev_env else operator_executable()
    if options.kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(options.kubeconfig)
    plane = start_control_plane()
    kube = Kube(plane.kubeconfig)
    try:
        kube.apply_pool_crd()
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as workdir:
            result = run(kube, plane.kubeconfig, options.pools, options.seconds, Path(workdir), executable)
    finally:
        kube.close()
        plane.stop()
    result["kubernetes"] = "hack/kube 1.20.2" if plane.started_dir else "KUBECONFIG"
    result["cpus"] = os.cpu_count()
    result["environment"] = ".venv (development)" if options.dev_env else "operator extra only (as the image)"
    for phase in ("idle", "active"):
        figures = result[phase]
        print(
            f"{result['pools']} pools, {phase}: {figures['cpu_seconds_per_polling_cycle']:.3f} CPU s per "
            f"polling cycle ({figures['cpu_ms_per_pool_cycle']} ms per pool, "
            f"{figures['cpu_percent_of_one_core']}% of a core), RSS {figures.get('VmRSS')} MiB "
            f"(peak {figures.get('VmHWM')} MiB), "
            f"{figures['pool_cycles']}/{figures['pool_cycles_expected']} cycles"
        )
    print(
        f"all {result['pools']} pools Ready {result['seconds_until_all_ready']}s after the operator started"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
