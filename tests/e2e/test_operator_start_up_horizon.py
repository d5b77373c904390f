"""The start-up horizon end to end: real rq workers in fake-kubelet pods, the real operator.

Once the workers' own rq statistics give the role's mean job time, a burst the running workers
start before a new pod could be ready adds no pod (the demand rule alone would add five); the
decision is counted under ``start_up_horizon`` in ``/metrics`` and every job still finishes.
"""

from __future__ import annotations

import time

import pytest
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tests.e2e.conftest import OperatorFactory
from tests.support.kube import Kube, poll, pool_manifest
from tests.support.kubelet import FakeKubelet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOB_S = 0.3
BURST = 10
POD_START_S = 30


def test_a_burst_the_running_worker_clears_first_adds_no_pod(
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
        podStartSeconds=POD_START_S,
        roles={
            "quick": {
                "queues": ["quick"],
                "minReplicas": 1,
                "maxReplicas": 6,
                "workersPerPod": 1,
                "targetJobsPerWorker": 1,
            }
        },
        behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 10, "periodSeconds": 15}]}},
    )
    kube.create_pool(namespace, pool)
    operator = start_operator()
    poll(lambda: len(kubelet.running()) == 1, 30, "the minReplicas pod running")
    queue = Queue("quick", connection=redis, serializer=JSONSerializer)

    for _ in range(3):  # one at a time: a demand of 1 never asks for a second pod
        job = queue.enqueue("time.sleep", JOB_S, job_timeout=60)
        poll(lambda job=job: job.get_status(refresh=True) == "finished", 30, "warm-up job done")
    assert kube.replicas(namespace, "pantry-quick") == 1

    def horizon_decisions() -> float:
        value = operator.metric("pirate_operator_decisions_total", role="quick", category="start_up_horizon")
        return value or 0.0

    before = horizon_decisions()
    burst = [queue.enqueue("time.sleep", JOB_S, job_timeout=60) for _ in range(BURST)]
    seen_replicas = set()
    deadline = time.monotonic() + 30
    while not all(job.get_status(refresh=True) == "finished" for job in burst):
        assert time.monotonic() < deadline, "the burst never finished"
        seen_replicas.add(kube.replicas(namespace, "pantry-quick"))
        time.sleep(0.1)
    # One worker starts 30 s / ~0.3 s = ~100 jobs before a new pod would be ready: none is added,
    # where demand 10 / 1 per pod alone asks for 6 (maxReplicas).
    assert seen_replicas == {1}
    poll(lambda: horizon_decisions() > before, 10, "a decision held by the start-up horizon")
