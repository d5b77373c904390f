"""``/healthz`` (liveness) and ``/metrics`` (Prometheus) on one port, served from the event loop.

Liveness answers from the same event loop that runs the polling cycles, so a blocked loop fails
it. It does not depend on Redis or on being the active peering replica: a standby replica or a
pool whose Redis is down must not get the operator restarted.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pirate_operator.metrics import OperatorMetrics

logger = logging.getLogger(__name__)


class HttpServer:
    """The probe and metrics server; :meth:`start` binds, :meth:`stop` releases the port."""

    def __init__(self, metrics: OperatorMetrics, port: int, host: str = "0.0.0.0") -> None:
        self._metrics = metrics
        self._port = port
        self._host = host
        self._runner: web.AppRunner | None = None
        self._started = time.monotonic()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._serve_metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        logger.info("serving /healthz and /metrics on port %s", self._port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "uptimeSeconds": round(time.monotonic() - self._started, 1)}
        )

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
