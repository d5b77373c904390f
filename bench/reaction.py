"""Reaction latency: a burst of jobs is enqueued → the operator patches the Deployment's replicas.

    .venv/bin/python -m bench.reaction [--bursts 30] [--kubeconfig FILE]

Runs the real operator (``pirate-workers operator``, a subprocess) against a real apiserver
(``--kubeconfig``/``KUBECONFIG`` if given, else hack/kube started for the run) and a real
redis-server, with the default pool settings (``pollingIntervalSeconds`` 2, default
behaviour). Each burst goes to its own pool (its own Redis database, so every burst starts from
zero replicas and no stabilization window or rate policy from an earlier burst is involved), at a
random moment of the polling cycle. Latency is measured from the enqueue to the watch event in
which the Deployment's ``spec.replicas`` changes (the write itself, not pods starting).

Prints the figures and writes bench/results/reaction.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from kubernetes import watch
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from tests.support.kube import Kube, OperatorProcess, poll, pool_manifest, start_control_plane

from pirate_worker.runtime.embedded_redis import EmbeddedRedis

ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS: Final = ROOT / "bench" / "results" / "reaction.json"
NAMESPACE: Final = "bench-reaction"
BURST_JOBS: Final = 8
DEFAULT_INTERVAL_S: Final = 2
#: Redis has 16 databases; database 0 stays unused, so one redis-server serves 15 bursts.
BURSTS_PER_SERVER: Final = 15


class ReplicaWatch:
    """Records, per Deployment, when its spec.replicas was first seen above zero."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.first_scaled: dict[str, float] = {}
        self._kube = kube
        self._namespace = namespace
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # the stream breaks when stopped; a real break is retried
                if self._stop.is_set():
                    return

    def _follow(self) -> None:
        stream = self._watch.stream(
            self._kube.apps.list_namespaced_deployment, self._namespace, timeout_seconds=60
        )
        for event in stream:
            seen = time.monotonic()
            deployment = event["object"]
            name = deployment.metadata.name
            if (deployment.spec.replicas or 0) > 0 and name not in self.first_scaled:
                self.first_scaled[name] = seen


def measure(kube: Kube, kubeconfig: Path, bursts: int, workdir: Path) -> dict[str, Any]:
    servers = [EmbeddedRedis().start() for _ in range(-(-bursts // BURSTS_PER_SERVER))]
    bases = [server.url.rsplit("/", 1)[0] for server in servers]
    urls = [f"{bases[n // BURSTS_PER_SERVER]}/{n % BURSTS_PER_SERVER + 1}" for n in range(bursts)]
    kube.create_namespace(NAMESPACE)
    operator = None
    watcher = ReplicaWatch(kube, NAMESPACE).start()
    try:
        for index, url in enumerate(urls, start=1):
            kube.create_pool(NAMESPACE, pool_manifest(f"burst-{index}", url))
        operator = OperatorProcess(kubeconfig, NAMESPACE, workdir / "operator.log").wait_healthy()
        poll(lambda: len(kube.deployments(NAMESPACE)) == 3 * bursts, 60, "every pool's Deployments")
        rng = random.Random(7)
        latencies: list[float] = []
        for index, url in enumerate(urls, start=1):
            time.sleep(rng.uniform(0, DEFAULT_INTERVAL_S))  # a random phase of the polling cycle
            client = Redis.from_url(url)
            queue = Queue("llm", connection=client, serializer=JSONSerializer)
            with client.pipeline() as pipe:
                for _ in range(BURST_JOBS):
                    queue.enqueue("time.sleep", 0, job_timeout=60, pipeline=pipe)
                enqueued = time.monotonic()
                pipe.execute()
            name = f"burst-{index}-llm"
            poll(lambda name=name: name in watcher.first_scaled, 30, f"{name} scaled")
            latencies.append(watcher.first_scaled[name] - enqueued)
            client.close()
    finally:
        watcher.stop()
        if operator is not None:
            operator.stop()
        kube.purge_namespace(NAMESPACE)
        for server in servers:
            server.stop()
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "bursts": bursts,
        "jobs_per_burst": BURST_JOBS,
        "polling_interval_s": DEFAULT_INTERVAL_S,
        "median_s": round(statistics.median(latencies), 3),
        "p95_s": round(p95, 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
        "samples_s": [round(value, 3) for value in latencies],
        "measured": "enqueue of the burst -> watch event with the Deployment's spec.replicas > 0",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=30, help="bursts to measure (at least 10)")
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="cluster to use (default: KUBECONFIG or hack/kube)"
    )
    options = parser.parse_args()
    if options.bursts < 10:
        parser.error("--bursts must be at least 10")
    if options.kubeconfig is not None:
        import os

        os.environ["KUBECONFIG"] = str(options.kubeconfig)
    plane = start_control_plane()
    kube = Kube(plane.kubeconfig)
    try:
        kube.apply_pool_crd()
        with tempfile.TemporaryDirectory(prefix="bench-reaction-") as workdir:
            result = measure(kube, plane.kubeconfig, options.bursts, Path(workdir))
    finally:
        kube.close()
        plane.stop()
    result["kubernetes"] = "hack/kube 1.20.2" if plane.started_dir else "KUBECONFIG"
    print(
        f"reaction over {result['bursts']} bursts (pollingIntervalSeconds {DEFAULT_INTERVAL_S}): "
        f"median {result['median_s']:.2f}s, p95 {result['p95_s']:.2f}s, "
        f"min {result['min_s']:.2f}s, max {result['max_s']:.2f}s"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
