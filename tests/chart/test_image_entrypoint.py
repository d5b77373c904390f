"""The worker image's entrypoint handles SIGTERM: run it the way the container runtime would.

The command is ENTRYPOINT + CMD read from Dockerfile.worker (with the role set to recorder),
started directly, with no shell in between, against the session's real redis-server. SIGTERM
goes to that one process, as the kubelet sends it to PID 1; it must exit 0 within seconds and
take its worker processes with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pirate_worker.runtime.embedded_redis import free_port
from tests.chart.test_dockerfiles import DOCKERFILES, exec_form, parse
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration

EXIT_DEADLINE_S = 10.0


def image_command(role: str) -> tuple[list[str], dict[str, str]]:
    """argv and ENV of Dockerfile.worker's runtime stage, CMD's role replaced by ``role``."""
    _, stages = parse(DOCKERFILES["worker"])
    runtime = stages[-1]
    entrypoint = exec_form(runtime.last("ENTRYPOINT") or "null")
    command = exec_form(runtime.last("CMD") or "null")
    command[command.index("--role") + 1] = role
    env: dict[str, str] = {}
    for arguments in runtime.all("ENV"):
        for pair in arguments.split():
            name, _, value = pair.partition("=")
            env[name] = value
    return entrypoint + command, env


def get_json(port: int, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def workers_idle(port: int) -> bool:
    """Every worker process registered in Redis and waiting for jobs: the steady state."""
    status = get_json(port, "/worker-status")
    return bool(status and status["total"] and all(w.get("state") == "idle" for w in status["workers"]))


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_worker_entrypoint_exits_zero_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    argv, image_env = image_command("recorder")
    assert argv[:3] == ["pirate-workers", "worker", "--role"]
    bin_dir = Path(sys.executable).parent  # the venv's bin, as /opt/venv/bin is on the image's PATH
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "WORKER_", "LLM_"))},
        **{k: v for k, v in image_env.items() if k not in ("PATH", "HOME")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "REDIS_URL": redis_url,
        "HEALTH_PORT": str(port),
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hsds.sqlite'}",
    }
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: get_json(port, "/health") or process.poll() is not None, 30, what="/health")
        assert process.poll() is None, (tmp_path / "worker.log").read_text()
        wait_for(lambda: workers_idle(port), 30, what="the workers to register and idle")
        workers = wait_for(lambda: children_of(process.pid), 10, what="the worker processes")

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=EXIT_DEADLINE_S)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    output = (tmp_path / "worker.log").read_text()
    assert code == 0, output
    assert elapsed < EXIT_DEADLINE_S
    assert "warm shutdown" in output
    wait_for(lambda: not any(alive(pid) for pid in workers), 5, what="the worker processes to exit")
