"""A local HTTP server speaking the LLM wire protocols the official SDKs use (DESIGN §8).

* Anthropic Messages: ``POST /v1/messages``
* OpenAI Chat Completions: ``POST /v1/chat/completions`` (also ``/chat/completions``)
* Ollama chat: ``POST /api/chat``

Like the hosted APIs, it can enforce a requests-per-minute limit (:class:`RequestLimit`: a token
bucket refilled continuously, Anthropic's or OpenAI's rate-limit headers on every answer, a 429
with ``retry-after`` when the bucket is empty) and answer after a random latency; it counts the
calls in flight at once and the 429s it sent.

It runs in the test process; SDK clients (in-process or in worker subprocesses) point at it by
base URL. It records every request (path, headers, JSON body) and answers from a script: one
:class:`Reply` per request in order, and a valid answer once the script is empty. A valid answer
is what the offline ``rules`` provider makes of the record in the request, so it really
validates against the HSDS schema.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pirate_worker.llm.base import GenerationConfig, Message
from pirate_worker.llm.prompt import scraped_content
from pirate_worker.llm.rules import RulesProvider

ANTHROPIC_PATH = "/v1/messages"
OPENAI_PATHS = ("/v1/chat/completions", "/chat/completions")
OLLAMA_PATH = "/api/chat"

GARBAGE_TEXT = "Sure! Here is the pantry: <b>Food Bank</b>, open Mondays."
#: Parses as JSON but breaks the schema in several places (wrong types, missing and extra fields).
INVALID_DOCUMENT: dict[str, Any] = {"organization": {"name": 42, "colour": "red"}, "services": "none"}


@dataclass
class Reply:
    """One scripted answer: ``kind`` is ``valid``, ``garbage``, ``invalid_schema``, ``truncated``,
    ``refusal`` or ``error`` (``status`` with ``headers`` and an error body in the protocol's shape).
    ``delay_s`` delays the answer (timeouts)."""

    kind: str = "valid"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None
    message: str = "scripted error"
    delay_s: float = 0.0


def valid(delay_s: float = 0.0) -> Reply:
    return Reply("valid", delay_s=delay_s)


def garbage() -> Reply:
    return Reply("garbage")


def invalid_schema() -> Reply:
    return Reply("invalid_schema")


def truncated() -> Reply:
    return Reply("truncated")


def refusal() -> Reply:
    return Reply("refusal")


def error(
    status: int,
    message: str = "scripted error",
    headers: dict[str, str] | None = None,
    error_type: str | None = None,
) -> Reply:
    return Reply("error", status=status, headers=headers or {}, error_type=error_type, message=message)


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def protocol(self) -> str:
        return _protocol(self.path) or "unknown"


class RequestLimit:
    """A requests-per-minute limit as the hosted APIs enforce it: a bucket refilled continuously
    at ``per_minute / 60`` a second, starting full. It holds ``capacity`` requests (a minute's
    worth unless told; smaller when a provider enforces its limit over shorter intervals)."""

    def __init__(self, per_minute: int, capacity: int | None = None, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.capacity = float(capacity or per_minute)
        self._rate = per_minute / 60.0
        self._level = self.capacity
        self._clock = clock
        self._at = clock()

    def take(self) -> tuple[bool, float, float]:
        """(allowed, remaining after this request, seconds until one request is available)."""
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self._rate)
        self._at = now
        if self._level >= 1.0:
            self._level -= 1.0
            return True, self._level, 0.0
        return False, self._level, (1.0 - self._level) / self._rate

    def headers(self, protocol: str, remaining: float, wait_s: float) -> dict[str, str]:
        left = str(max(math.floor(remaining), 0))
        full_in = (self.capacity - remaining) / self._rate
        if protocol == "anthropic":
            reset = datetime.now(UTC) + timedelta(seconds=full_in)
            headers = {
                "anthropic-ratelimit-requests-limit": str(self.per_minute),
                "anthropic-ratelimit-requests-remaining": left,
                "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
            }
        else:
            headers = {
                "x-ratelimit-limit-requests": str(self.per_minute),
                "x-ratelimit-remaining-requests": left,
                "x-ratelimit-reset-requests": f"{full_in:.3f}s",
            }
        if wait_s > 0:
            headers["retry-after"] = str(max(math.ceil(wait_s), 1))
        return headers


class LLMServer:
    """Start with :meth:`start` (or as a context manager); ``url`` is the base URL.

    ``limit`` enforces a :class:`RequestLimit`; ``latency`` = (low, high) delays every valid
    answer by a uniform random time (seeded by ``seed``).
    """

    def __init__(
        self,
        limit: RequestLimit | None = None,
        latency: tuple[float, float] | None = None,
        seed: int = 1,
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self.limit = limit
        self.latency = latency
        self.rate_limited = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._random = random.Random(seed)
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._rules = RulesProvider()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="llm-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> LLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *replies: Reply) -> None:
        """Replace the script: the next requests get these replies in order, then valid answers."""
        with self._lock:
            self._script = deque(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else Reply()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def admit(self, protocol: str) -> tuple[bool, dict[str, str], float]:
        """Count the request in flight and check the limit: (allowed, headers, latency)."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            delay = self._random.uniform(*self.latency) if self.latency else 0.0
            if self.limit is None:
                return True, {}, delay
            allowed, remaining, wait = self.limit.take()
            if not allowed:
                self.rate_limited += 1
            return allowed, self.limit.headers(protocol, remaining, wait), delay

    def done(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def valid_document(self, request: RecordedRequest) -> dict[str, Any]:
        """What the rules provider makes of the scraped record carried by ``request``."""
        config = GenerationConfig(model="rules-v1")
        result = self._rules.generate(_conversation(request), {}, config)
        assert result.parsed is not None
        return result.parsed


def _protocol(path: str) -> str | None:
    path = path.split("?", 1)[0]
    if path == ANTHROPIC_PATH:
        return "anthropic"
    if path in OPENAI_PATHS:
        return "openai"
    if path == OLLAMA_PATH:
        return "ollama"
    return None


def _conversation(request: RecordedRequest) -> list[Message]:
    """The request's user texts as messages (Anthropic turns hold lists of text blocks)."""
    found: list[Message] = []
    for message in request.body.get("messages", []):
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for block in blocks:
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                found.append(Message(role=message.get("role", "user"), content=block["text"]))
    if scraped_content(found) is None:
        raise ValueError("request carries no scraped record")
    return found


def _answer(
    server: LLMServer, request: RecordedRequest, reply: Reply
) -> tuple[int, dict[str, str], dict[str, Any]]:
    protocol = request.protocol
    if reply.kind == "error":
        return reply.status, reply.headers, _error_body(protocol, reply)
    if reply.kind == "valid":
        document: dict[str, Any] | None = server.valid_document(request)
        text = json.dumps(document)
    elif reply.kind == "invalid_schema":
        document, text = INVALID_DOCUMENT, json.dumps(INVALID_DOCUMENT)
    elif reply.kind == "truncated":
        document, text = {}, '{"organization": {"name": "Food Ba'
    else:  # garbage, refusal
        document, text = None, GARBAGE_TEXT if reply.kind == "garbage" else "I can't help with that."
    model = request.body.get("model", "unknown")
    if protocol == "anthropic":
        return (
            200,
            {"request-id": "req_local_1"},
            _anthropic_message(request, reply.kind, model, document, text),
        )
    if protocol == "openai":
        return 200, {"x-request-id": "req_local_1"}, _openai_completion(reply.kind, model, text)
    return 200, {}, _ollama_chat(reply.kind, model, text)


def _anthropic_message(
    request: RecordedRequest, kind: str, model: str, document: dict[str, Any] | None, text: str
) -> dict[str, Any]:
    tools = request.body.get("tools") or [{}]
    if document is not None:
        content = [
            {"type": "tool_use", "id": "toolu_local_1", "name": tools[0].get("name"), "input": document}
        ]
    else:
        content = [{"type": "text", "text": text}]
    stop_reason = {"truncated": "max_tokens", "refusal": "refusal", "garbage": "end_turn"}.get(
        kind, "tool_use"
    )
    return {
        "id": "msg_local_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 120,
            "output_tokens": 80,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 30,
        },
    }


def _openai_completion(kind: str, model: str, text: str) -> dict[str, Any]:
    refused = kind == "refusal"
    return {
        "id": "chatcmpl-local-1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if refused else text,
                    "refusal": text if refused else None,
                },
                "finish_reason": "length" if kind == "truncated" else "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 150,
            "completion_tokens": 80,
            "total_tokens": 230,
            "prompt_tokens_details": {"cached_tokens": 30},
        },
    }


def _ollama_chat(kind: str, model: str, text: str) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "length" if kind == "truncated" else "stop",
        "prompt_eval_count": 120,
        "eval_count": 80,
    }


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _error_body(protocol: str, reply: Reply) -> dict[str, Any]:
    if protocol == "anthropic":
        kind = reply.error_type or _ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": reply.message}}
    if protocol == "openai":
        kind = reply.error_type or ("rate_limit_exceeded" if reply.status == 429 else "api_error")
        return {"error": {"message": reply.message, "type": kind, "param": None, "code": kind}}
    return {"error": reply.message}


def _make_handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {"_unparsed": raw.decode(errors="replace")}
            request = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            server.record(request)
            if _protocol(self.path) is None:
                self._send(HTTPStatus.NOT_FOUND, {}, {"error": "not found"})
                return
            allowed, limit_headers, latency = server.admit(request.protocol)
            try:
                if not allowed:
                    refused = error(429, "rate limit exceeded", limit_headers)
                    self._send(429, limit_headers, _error_body(request.protocol, refused))
                    return
                reply = server.next_reply()
                if reply.delay_s or latency:
                    time.sleep(reply.delay_s or latency)
                status, headers, payload = _answer(server, request, reply)
                self._send(status, {**limit_headers, **headers}, payload)
            finally:
                server.done()

        def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
