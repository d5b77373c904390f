"""A Nominatim-compatible geocoder on a loopback port (stdlib http.server in a thread).

It answers ``GET /search?q=...&format=jsonv2`` from a table (query → coordinates), with a status
it can be told to return instead, and records when (monotonic, server side) each request came
and with which User-Agent, so tests check the cache and the rate limit on the server's side.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class SeenRequest:
    at: float
    query: str
    user_agent: str


@dataclass
class FakeGeocoder:
    places: dict[str, tuple[float, float]] = field(default_factory=dict)
    status: int = 200
    requests: list[SeenRequest] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeGeocoder:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query).get("q", [""])[0]
                fake.requests.append(SeenRequest(time.monotonic(), query, self.headers.get("User-Agent", "")))
                if parts.path != "/search" or fake.status != 200:
                    self._answer(fake.status if fake.status != 200 else 404, {"error": "no"})
                    return
                found = fake.places.get(query)
                body: Any = [] if found is None else [{"lat": str(found[0]), "lon": str(found[1])}]
                self._answer(200, body)

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
