"""Start and watch real worker processes from tests; polling with deadlines, never bare sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pirate_worker.runtime.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")


class WorkerProcess:
    """A supervisor subprocess (real CLI or the scripted-provider launcher) with its health port."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @classmethod
    def start(
        cls,
        role: str,
        count: int,
        env: dict[str, str],
        tmp: Path,
        scripted: bool = True,
        extra_args: list[str] | None = None,
    ) -> WorkerProcess:
        port = free_port()
        full_env = {**os.environ, **env, "HEALTH_PORT": str(port), "PYTHONPATH": str(ROOT)}
        if scripted:
            cmd = [sys.executable, "-m", "tests.support.run_worker", role, str(count)]
        else:
            cmd = [sys.executable, "-m", "pirate_worker", "worker", "--role", role, "--count", str(count)]
        cmd += extra_args or []
        log_path = tmp / f"worker-{role}-{port}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(cmd, env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        worker = cls(proc, port, log_path)
        wait_for(
            lambda: worker.health_code() in (200, 503) or proc.poll() is not None, 30, what="health endpoint"
        )
        assert proc.poll() is None, worker.log()
        return worker

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def health_code(self) -> int | None:
        try:
            return self.get("/health")[0]
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def json(self, path: str) -> tuple[int, dict[str, Any]]:
        code, body = self.get(path)
        return code, json.loads(body)

    def child_pids(self) -> list[int]:
        _, status = self.json("/worker-status")
        return [w["pid"] for w in status["workers"] if w["alive"]]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
