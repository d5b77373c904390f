"""A whole run on the real control plane, then every place a secret could land is searched for it.

The provider's API key lives in a Secret; the pool names it by reference; the fake kubelet gives
it to the worker pods as the kubelet would (``secretKeyRef``). The provider is the local wire
server speaking Anthropic's protocol, scripted to quote the key back in its errors (the worst
case) and to answer 401 and 429 first, so the auth-block, transient-retry and success paths all
run. Afterwards the key must appear only where it belongs, the request headers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import record_job_id
from pirate_worker.services.content_store import RedisContentStore
from pirate_worker.services.scraper_files import load_scraper_file
from pirate_worker.services.submission import submit_records
from tests.e2e.conftest import OperatorFactory
from tests.support.kube import Kube, poll, pool_manifest
from tests.support.kubelet import FakeKubelet
from tests.support.llm_server import LLMServer, error
from tests.support.processes import ROOT
from tests.support.secrets import redis_dump

pytestmark = pytest.mark.e2e

KEY = f"sk-ant-e2e-{uuid.uuid4().hex}"


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


def _finished(redis: Redis, job_id: str) -> bool:
    try:
        return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status() == "finished"
    except Exception:  # not there yet
        return False


def test_a_full_run_leaves_the_api_key_nowhere_but_the_request_headers(
    kube: Kube,
    namespace: str,
    redis_url: str,
    redis: Redis,
    start_operator: OperatorFactory,
    kubelet: FakeKubelet,
    llm_server: LLMServer,
) -> None:
    llm_server.script(
        error(401, f"invalid x-api-key: {KEY}", error_type="authentication_error"),
        error(429, f"rate limit reached for key {KEY}", headers={"retry-after": "1"}),
    )
    kube.create_secret(namespace, "llm-keys", {"anthropic": KEY})
    one = {"minReplicas": 1, "maxReplicas": 1}
    pool = pool_manifest(
        "pantry",
        redis_url,
        pollingIntervalSeconds=2,
        provider={
            "name": "anthropic",
            "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"},
            "baseUrl": llm_server.url,
        },
        quota={"replicasWhenBlocked": 1, "probeReplicas": 1},
        roles={"llm": one, "reconciler": one, "recorder": one},
    )
    # An auth block the operator sees (three polling intervals); DEBUG logs, the most a worker writes.
    kubelet.env.update(AUTH_RETRY_DELAY="6", LOG_LEVEL="DEBUG")
    kube.create_pool(namespace, pool)
    operator = start_operator()

    records = load_scraper_file(sorted((ROOT / "examples").glob("*.json"))[0])[:3]
    connection = connect(redis_url)
    try:
        report = submit_records(connection, RedisContentStore(connection, 3600), records, ttl_s=3600)
    finally:
        connection.close()
    job_ids = [item.job_id for item in report.enqueued]
    assert len(job_ids) == 3
    poll(
        lambda: all(_finished(redis, record_job_id(job_id)) for job_id in job_ids),
        120,
        "every record aligned, reconciled and recorded",
        interval=0.5,
    )

    # The key did travel where it belongs.
    first = llm_server.requests[0].headers
    assert KEY in first.get("x-api-key", "") + first.get("authorization", "")
    assert llm_server.calls() >= 5  # 401, 429, then the three records

    pods_dir = kubelet.workdir
    worker_logs = {path: path.read_text(errors="replace") for path in pods_dir.rglob("worker.log")}
    recorder_files = [path for path in pods_dir.rglob("outputs/**/*.json") if path.is_file()]
    events = kube._json(kube.core.list_namespaced_event(namespace, _preload_content=False))
    surfaces = {
        "operator log": operator.log_path.read_text(errors="replace"),
        "redis": redis_dump(redis),
        "pool (spec and status)": json.dumps(kube.get_pool(namespace, "pantry")),
        "events": json.dumps(events),
        "deployments": json.dumps(kube.deployments(namespace)),
        **{f"log of {path.parent.name}": text for path, text in worker_logs.items()},
        **{f"recorder file {path.name}": path.read_text() for path in recorder_files},
    }
    for name, text in surfaces.items():
        assert KEY not in text, f"API key found in {name}"
        assert KEY[-16:] not in text, f"part of the API key found in {name}"

    # The scan looked at real material: every pod logged, records were written, and the provider's
    # error text (which quoted the key) reached the operator's Events, redacted.
    assert len(worker_logs) >= 3 and all(worker_logs.values())
    assert len(recorder_files) >= 3
    blocked = [
        event
        for event in events.get("items", [])
        if event.get("reason", "").startswith("Provider") and event["reason"] != "ProviderRecovered"
    ]
    assert any("x-api-key" in event.get("message", "") for event in blocked), [
        (event.get("reason"), event.get("message")) for event in events.get("items", [])
    ]
