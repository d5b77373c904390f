"""Drain-aware scale-in end to end: real worker processes in fake-kubelet pods run slow jobs.

Busy workers are mapped to their pods by name; before scaling in, the operator marks idle pods
cheaper to delete (``controller.kubernetes.io/pod-deletion-cost``; honoured from Kubernetes 1.22,
the 1.20 control plane here only stores it), and replicas never drop below the pods busy workers
occupy. Whatever pod the ReplicaSet picks, its warm shutdown lets the running job finish.
"""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from pirate_operator.kube.names import POD_DELETION_COST_ANNOTATION
from tests.e2e.conftest import OperatorFactory
from tests.e2e.helpers import status_role
from tests.support.kube import Kube, poll, pool_manifest
from tests.support.kubelet import FakeKubelet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LONG_JOB_S = 20
SHORT_JOB_S = 2
WINDOW_S = 4


def busy_pods(redis: Redis) -> dict[str, int]:
    """Busy workers per pod, from the workers' own registrations (names start with the pod)."""
    busy: dict[str, int] = {}
    for worker in Worker.all(connection=redis):
        if worker.get_state() == "busy":
            pod = worker.name.rsplit(".", 3)[0]
            busy[pod] = busy.get(pod, 0) + 1
    return busy


def test_scale_in_keeps_busy_pods_and_lets_their_jobs_finish(
    kube: Kube,
    namespace: str,
    redis_url: str,
    redis: Redis,
    start_operator: OperatorFactory,
    kubelet: FakeKubelet,
) -> None:
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=2,
        roles={"slow": {"queues": ["slow"], "workersPerPod": 1, "maxReplicas": 4, "jobTimeoutSeconds": 60}},
        behavior={
            "scaleUp": {"policies": [{"type": "Pods", "value": 10, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": WINDOW_S},
        },
    )
    kube.create_pool(namespace, pool)
    start_operator()
    queue = Queue("slow", connection=redis, serializer=JSONSerializer)
    long_job = queue.enqueue("time.sleep", LONG_JOB_S, job_timeout=60)
    short_jobs = [queue.enqueue("time.sleep", SHORT_JOB_S, job_timeout=60) for _ in range(2)]

    poll(lambda: kube.replicas(namespace, "pantry-slow") == 3, 10, "3 replicas for 3 jobs")
    poll(lambda: len(kubelet.running()) == 3, 30, "3 worker pods running")

    def worker_of_long_job() -> str | None:
        job = Job.fetch(long_job.id, connection=redis, serializer=JSONSerializer)
        return job.worker_name if job.get_status() == JobStatus.STARTED else None

    holder = poll(worker_of_long_job, 30, "long job started")
    busy_pod = str(holder).rsplit(".", 3)[0]
    assert busy_pod in kubelet.running()

    costs: dict[str, str] = {}
    lowest_margin = None
    deadline = time.monotonic() + LONG_JOB_S + 30
    while time.monotonic() < deadline:
        replicas = kube.replicas(namespace, "pantry-slow") or 0
        busy = sum(busy_pods(redis).values())
        assert replicas >= busy, f"replicas {replicas} below busy workers {busy}"
        lowest_margin = replicas - busy if lowest_margin is None else min(lowest_margin, replicas - busy)
        for pod in kube.pods(namespace, "app.kubernetes.io/component=slow"):
            cost = (pod["metadata"].get("annotations") or {}).get(POD_DELETION_COST_ANNOTATION)
            if cost is not None:
                costs[pod["metadata"]["name"]] = cost
        if replicas == 1 and all(
            Job.fetch(j.id, connection=redis, serializer=JSONSerializer).get_status() == JobStatus.FINISHED
            for j in short_jobs
        ):
            break
        time.sleep(0.2)
    assert kube.replicas(namespace, "pantry-slow") == 1, "scale-in to the one busy pod"
    assert costs.get(busy_pod) == "1000", costs
    idle = {pod: cost for pod, cost in costs.items() if pod != busy_pod}
    assert len(idle) == 2
    assert set(idle.values()) == {"0"}, costs
    poll(lambda: status_role(kube, namespace, "pantry", "slow").get("busyWorkers") == 1, 5, "busyWorkers 1")

    poll(
        lambda: long_job.get_status(refresh=True) == JobStatus.FINISHED,
        LONG_JOB_S + 30,
        "long job finished, not killed",
    )
    poll(lambda: kube.replicas(namespace, "pantry-slow") == 0, WINDOW_S + 10, "scale to zero once idle")
    poll(lambda: not kubelet.running(), 30, "every worker pod stopped")
    assert all(p.proc.returncode == 0 for p in kubelet.finished.values()), {
        name: p.proc.returncode for name, p in kubelet.finished.items()
    }
