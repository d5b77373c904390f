"""Pod start on the real node: a replica added → its RQ workers registered in Redis.

    .venv/bin/python -m bench.pod_start [--samples 20] [--role llm]

On the node of hack/cluster (the one ``make cluster`` runs, else one started for the run) with the
images of ``make images``, the chart is installed with its default pool paused, so the operator
keeps the Deployments in shape but writes no replica count. Each sample scales one role's
Deployment from 0 to 1 through its scale subresource and measures from that write to the latest
``birth`` of the new pod's RQ workers (written by the workers themselves when they register, the
moment they can take a job): scheduling, the sandbox and the network, the container, Python and
the worker's start. Then it scales back to 0 and waits for the pod to go. This is what a pool's
``podStartSeconds`` stands for (default 10).

Prints p50/p95/max and writes bench/results/pod_start.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tests.support.cluster import start_cluster
from tests.support.images import Docker, build_images
from tests.support.kube import poll
from tests.support.release import POOL, RELEASE, Release, install, node_values

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "pod_start.json"
DEFAULT_POD_START_SECONDS: Final = 10


def registered_births(release: Release, pod: str) -> list[float]:
    """Unix times at which the workers of ``pod`` (named ``<pod>.<role>.<i>.<pid>``) registered."""
    names = [name for name in release.redis_cli("SMEMBERS", "rq:workers").split() if f"{pod}." in name]
    births = []
    for name in names:
        key = name.strip('"').removeprefix("rq:worker:")
        raw = release.redis_cli("HGET", f"rq:worker:{key}", "birth").strip('"')
        if raw and raw != "(nil)":
            births.append(datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC).timestamp())
    return births


def sample(release: Release, role: str, workers: int) -> float:
    deployment = f"{POOL}-{role}"
    kubectl = release.cluster.kubectl
    before = {p["metadata"]["name"] for p in release.role_pods(role)}
    started = time.time()
    kubectl("scale", f"deployment/{deployment}", "-n", release.namespace, "--replicas=1")
    (pod,) = poll(
        lambda: [
            p["metadata"]["name"] for p in release.role_pods(role) if p["metadata"]["name"] not in before
        ],
        60,
        "the new pod",
        interval=0.1,
    )
    births = poll(
        lambda: (found := registered_births(release, pod)) and len(found) >= workers and found,
        120,
        f"{workers} workers of {pod} registered",
        interval=0.2,
    )
    kubectl("scale", f"deployment/{deployment}", "-n", release.namespace, "--replicas=0")
    poll(lambda: not release.role_pods(role), 120, f"{pod} gone", interval=0.5)
    return max(births) - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--role", default="llm", choices=["llm", "reconciler", "recorder"])
    args = parser.parse_args(argv)

    cluster = start_cluster()
    build_images(Docker(cluster.docker_host))
    namespace = f"bench-pod-start-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(namespace)
    try:
        release = install(cluster, namespace, node_values(paused=True))
        pool: dict[str, Any] = release.pool()
        workers = {"llm": 2}.get(args.role, 1)
        workers = int(pool["spec"]["roles"][args.role].get("workersPerPod", workers))
        poll(lambda: release.get("deployment", f"{POOL}-{args.role}"), 60, "the role's Deployment")
        sample(release, args.role, workers)  # warm-up: page cache, first CNI allocation
        seconds = [sample(release, args.role, workers) for _ in range(args.samples)]
        release.helm.uninstall(RELEASE, timeout=180)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.stop()
    result = {
        "role": args.role,
        "workers_per_pod": workers,
        "samples": len(seconds),
        "p50_s": round(statistics.median(seconds), 3),
        "p95_s": round(percentile(seconds, 0.95), 3),
        "max_s": round(max(seconds), 3),
        "min_s": round(min(seconds), 3),
        "default_pod_start_seconds": DEFAULT_POD_START_SECONDS,
        "seconds": [round(value, 3) for value in seconds],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"pod start ({args.role}, {workers} workers, {len(seconds)} samples): "
        f"p50 {result['p50_s']} s, p95 {result['p95_s']} s, max {result['max_s']} s "
        f"(podStartSeconds default {DEFAULT_POD_START_SECONDS})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
