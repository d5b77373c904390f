"""Secured Redis end to end (issue 7, item 3): ``rediss://`` with a private CA and password URLs.

Real redis-servers: one TLS-only (plain TCP off) that also requires a password, one that only
requires a password. ``enqueue``, ``worker`` and ``status`` run as real processes against each,
and the operator reads demand from the TLS one. Along the way the password, the API keys and the
scraped content are looked for wherever a user or a scraper of ``/health`` could see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from redis import Redis
from redis.exceptions import RedisError

from pirate_operator.api import PoolSpec, effective_roles
from pirate_operator.sources import open_redis, read_pool_observation
from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import LLM_QUEUE, RECORDER_QUEUE, record_job_id
from pirate_worker.errors import ServiceUnavailable
from pirate_worker.runtime.embedded_redis import EmbeddedRedis, RedisTls
from pirate_worker.services.queueing import queue
from tests.conftest import missing_service
from tests.support.processes import ROOT, WorkerProcess, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Distinctive, with characters that must be percent-encoded in a URL.
PASSWORD = "pw-Zq8xL3/s:cret"
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-test-Kq7vN2pXw9",
    "OPENAI_API_KEY": "sk-openai-test-Hr4mT8yLc3",
}
EXAMPLE = ROOT / "examples" / "church_pages_text.json"
#: A line of scraped content (a prompt); it must not show in /health or /worker-status.
PROMPT_TEXT = "Lakeside Food Bank"


def _must_start(server: EmbeddedRedis) -> EmbeddedRedis:
    try:
        return server.start()
    except ServiceUnavailable as exc:
        missing_service(f"{exc} (TLS needs a redis-server built with TLS, such as Debian's)")
        raise  # unreachable: missing_service fails or skips


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> RedisTls:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = RedisTls(folder / "server.pem", folder / "server.key", folder / "ca.pem")
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    ca.cert_pem.write_to_path(str(files.ca_file))
    return files


@pytest.fixture(scope="module")
def tls_server(tls_files: RedisTls) -> Iterator[EmbeddedRedis]:
    server = _must_start(EmbeddedRedis(password=PASSWORD, tls=tls_files))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def password_server() -> Iterator[EmbeddedRedis]:
    server = _must_start(EmbeddedRedis(password=PASSWORD))
    yield server
    server.stop()


@pytest.fixture(params=["tls", "password"])
def secured(request: pytest.FixtureRequest) -> EmbeddedRedis:
    server: EmbeddedRedis = request.getfixturevalue(f"{request.param}_server")
    client = Redis.from_url(server.url)
    client.flushall()
    client.close()
    return server


def cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pirate_worker", *args],
        env={**os.environ, "REDIS_URL": url, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def leaks(text: str) -> list[str]:
    """Which secrets (password, raw or URL-encoded; API keys) appear in ``text``."""
    needles = {"password": PASSWORD, "encoded password": "pw-Zq8xL3%2Fs%3Acret", **SECRETS}
    return [name for name, needle in needles.items() if needle in text]


def test_the_servers_really_require_tls_and_the_password(tls_server, password_server, tls_files):
    """Guard for the tests below: a plain or password-less client is refused."""
    plain = Redis(host="127.0.0.1", port=tls_server.port, socket_connect_timeout=2, socket_timeout=2)
    with pytest.raises(RedisError):
        plain.ping()
    plain.close()
    no_password = Redis.from_url(f"rediss://127.0.0.1:{tls_server.port}/0?ssl_ca_certs={tls_files.ca_file}")
    with pytest.raises(RedisError):
        no_password.ping()
    no_password.close()
    wrong = Redis.from_url(f"redis://:nope@127.0.0.1:{password_server.port}/0")
    with pytest.raises(RedisError):
        wrong.ping()
    wrong.close()


def test_enqueue_worker_and_status_work_and_reveal_no_secret(secured, tmp_path):
    url = secured.url
    enqueued = cli(url, "enqueue", "--json", str(EXAMPLE), **SECRETS)
    assert enqueued.returncode == 0, enqueued.stderr
    jobs = [job["job_id"] for job in json.loads(enqueued.stdout)["jobs"] if not job["deduplicated"]]
    assert jobs

    env = {
        "REDIS_URL": url,
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hsds.sqlite'}",
        "LOG_LEVEL": "DEBUG",  # the most a user could turn on
        **SECRETS,
    }
    started: list[WorkerProcess] = []
    connection = connect(url)
    try:
        for role in ("llm", "recorder"):
            started.append(WorkerProcess.start(role, 2, env, tmp_path, scripted=False))
        wait_for(
            lambda: all(
                connection.hget(f"rq:job:{record_job_id(job)}", "status") == b"finished" for job in jobs
            ),
            90,
            what="every record job finished over the secured URL",
        )
        bodies = {path: worker.get(path) for worker in started for path in ("/health", "/worker-status")}
        status = cli(url, "status", "--json", **SECRETS)
    finally:
        for worker in started:
            worker.stop()
        connection.close()

    assert status.returncode == 0, status.stderr
    snapshot = json.loads(status.stdout)
    finished = {q["name"]: q["finished"] for q in snapshot["queues"]}
    assert finished[LLM_QUEUE] == len(jobs) and finished[RECORDER_QUEUE] == len(jobs)
    for path, (code, body) in bodies.items():
        text = body.decode()
        assert code == 200, (path, text)
        assert leaks(text) == [], path
        assert PROMPT_TEXT not in text, f"{path} shows scraped content"
    for worker in started:
        assert leaks(worker.log()) == [], worker.log()[-2000:]
    for result in (enqueued, status):
        assert leaks(result.stdout + result.stderr) == []


def test_unreachable_secured_redis_is_one_line_without_the_password(tls_server, tls_files):
    # Right CA and port, wrong password: the message says why and shows the URL redacted.
    url = tls_server.url.replace("pw-Zq8xL3%2Fs%3Acret", "pw-Zq8xL3-wrong")
    result = cli(url, "status")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "cannot reach Redis at rediss://:***@127.0.0.1" in line
    assert "pw-Zq8xL3" not in line
    # A CA that did not sign the server's certificate: refused, not silently trusted.
    other = trustme.CA()
    other_ca = tls_files.ca_file.with_name("other-ca.pem")
    other.cert_pem.write_to_path(str(other_ca))
    result = cli(tls_server.url.replace(str(tls_files.ca_file), str(other_ca)), "status")
    assert result.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr and leaks(result.stderr) == []


def test_operator_reads_demand_over_tls(tls_server):
    client = Redis.from_url(tls_server.url)
    client.flushall()
    for _ in range(7):
        queue(client, LLM_QUEUE).enqueue_call("time.sleep", args=(0,), timeout=60)
    client.close()
    spec = PoolSpec.model_validate(
        {"image": "example/worker:1", "redis": {"url": tls_server.url}, "provider": {"name": "rules"}}
    )
    operator_client = open_redis(tls_server.url)
    try:
        seen = read_pool_observation(
            operator_client, effective_roles(spec), datetime.now(UTC), provider="rules"
        )
    finally:
        operator_client.close()
    assert seen.roles["llm"].observation.queued == 7
    assert seen.roles["reconciler"].observation.queued == 0


def test_url_password_never_reaches_the_process_list(password_server):
    """The embedded server takes its password from a private file, not argv."""
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    assert PASSWORD not in out
    config = Path(password_server.data_dir) / "auth.conf"
    assert config.stat().st_mode & 0o077 == 0
