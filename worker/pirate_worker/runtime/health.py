"""``/health``, ``/worker-status`` and ``/metrics`` of a worker pod, served by the supervisor.

Health never calls the model: it pings Redis and reads the provider state keys. It answers 503
only when Redis is unreachable; a provider block is reported as ``paused`` with 200, so
liveness probes do not restart a pod that is correctly waiting out a quota.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis import Redis
from redis.exceptions import RedisError
from rq import Worker

from pirate_worker.contracts.provider_state import ProviderCondition
from pirate_worker.runtime.metrics import WorkerMetrics
from pirate_worker.services.provider_state import ProviderStateStore

log = logging.getLogger(__name__)


class HealthReporter:
    """Builds the JSON bodies; separate from HTTP so it is easy to test and reuse."""

    def __init__(
        self,
        connection: Redis,
        state: ProviderStateStore,
        model: str,
        gated: bool,
        worker_names: Callable[[], list[tuple[str, int, bool]]],
    ) -> None:
        self.connection = connection
        self.state = state
        self.model = model
        self.gated = gated
        self.worker_names = worker_names

    def health(self) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"provider": self.state.provider, "model": self.model}
        try:
            self.connection.ping()
            provider = self.state.current(datetime.now(UTC))
        except RedisError as exc:
            body.update(
                status="unhealthy", authenticated=None, message=f"redis unreachable: {type(exc).__name__}"
            )
            return HTTPStatus.SERVICE_UNAVAILABLE, body
        paused = self.gated and provider.blocked
        body.update(
            status="paused" if paused else "healthy",
            authenticated=provider.condition != ProviderCondition.AUTH_FAILED,
            provider_state=provider.condition.value,
            retry_at=provider.retry_at.isoformat() if provider.retry_at else None,
            message=provider.message if provider.blocked else "",
        )
        return HTTPStatus.OK, body

    def worker_status(self) -> tuple[int, dict[str, Any]]:
        workers = []
        for name, pid, alive in self.worker_names():
            entry: dict[str, Any] = {"name": name, "pid": pid, "alive": alive}
            try:
                found = Worker.find_by_key(
                    Worker.redis_worker_namespace_prefix + name, connection=self.connection
                )
            except RedisError:
                found = None
            if found is not None:
                executions = found.get_current_executions()
                entry.update(
                    state=found.get_state(),
                    current_job=executions[0].job_id if executions else None,
                    successful_jobs=found.successful_job_count,
                    failed_jobs=found.failed_job_count,
                    last_heartbeat=found.last_heartbeat.isoformat() if found.last_heartbeat else None,
                )
            workers.append(entry)
        busy = sum(1 for w in workers if w.get("state") == "busy")
        return HTTPStatus.OK, {"workers": workers, "total": len(workers), "busy": busy}


class HealthServer:
    """A small threaded HTTP server on its own daemon thread."""

    def __init__(self, host: str, port: int, reporter: HealthReporter, metrics: WorkerMetrics) -> None:
        handler = _make_handler(reporter, metrics)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("health and metrics on port %s", self.port)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _make_handler(reporter: HealthReporter, metrics: WorkerMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/health", "/healthz"):
                self._json(*reporter.health())
            elif path == "/worker-status":
                self._json(*reporter.worker_status())
            elif path == "/metrics":
                payload = generate_latest(metrics.registry)
                self._send(HTTPStatus.OK, payload, CONTENT_TYPE_LATEST)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("health %s", format % args)

    return Handler
