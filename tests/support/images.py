"""The images of ``make images`` for the cluster tier, and containers of them on the project's dockerd.

``build_images`` runs hack/images/build.sh, the script behind ``make images``: the first run
builds everything (about a minute and a half here, base image included), later runs only confirm
the layer cache (seconds). Containers started through :class:`Docker` carry a ``pirate-test-``
name and are removed by the same code that started them; nothing else on the daemon (the real
node's containers, other images) is touched. ``PIRATE_DOCKER_HOST`` names another daemon than the
project's (``unix:///run/pirate-workers/docker.sock``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "images" / "build.sh"
#: Debian's client: it matches the project's dockerd (a newer one may be first on PATH).
DOCKER_CLIENT = "/usr/bin/docker"
DEFAULT_DOCKER_HOST = "unix:///run/pirate-workers/docker.sock"
TAG = os.environ.get("IMAGE_TAG", "dev")
#: Image tags of ``make images`` by role.
IMAGES = {
    "worker": f"pirate-worker:{TAG}",
    "operator": f"pirate-operator:{TAG}",
    "redis": f"pirate-redis:{TAG}",
    "postgres": f"pirate-postgres:{TAG}",
}
BUILD_TIMEOUT_S = 900
T = TypeVar("T")


class ImageBuildError(RuntimeError):
    """hack/images/build.sh failed; the message ends with the tail of its output."""


@dataclass(frozen=True)
class Docker:
    """The docker CLI bound to one daemon."""

    host: str

    @classmethod
    def from_environment(cls) -> Docker:
        return cls(os.environ.get("PIRATE_DOCKER_HOST", DEFAULT_DOCKER_HOST))

    def run(
        self, *args: str, timeout: float = 60, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [DOCKER_CLIENT, *args],
            env={**os.environ, "DOCKER_HOST": self.host},
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
        return result

    def answers(self) -> bool:
        if not Path(DOCKER_CLIENT).exists():
            return False
        try:
            return (
                self.run("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        document: list[dict[str, Any]] = json.loads(self.run(kind, "inspect", name).stdout)
        return document[0]

    def logs(self, container: str) -> str:
        result = self.run("logs", container, check=False)
        return result.stdout + result.stderr

    def published_port(self, container: str, port: int) -> int:
        """The host port on 127.0.0.1 that ``-p 127.0.0.1::PORT`` gave the container's ``port``."""
        mapping = self.run("port", container, f"{port}/tcp").stdout.split()[0]
        return int(mapping.rpartition(":")[2])

    def state(self, container: str) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect("container", container)["State"]
        return state

    @contextmanager
    def container(self, image: str, args: Sequence[str] = (), options: Sequence[str] = ()) -> Iterator[str]:
        """``docker run -d OPTIONS IMAGE ARGS``; yields the container's name, removes it afterwards."""
        name = f"pirate-test-{uuid.uuid4().hex[:10]}"
        self.run("run", "-d", "--name", name, *options, image, *args)
        try:
            yield name
        finally:
            self.run("rm", "-f", "-v", name, check=False)


def build_images(docker: Docker) -> dict[str, str]:
    """Build (or confirm the cache of) every image of ``make images``; returns the tags by role."""
    try:
        result = subprocess.run(
            [str(BUILD_SCRIPT)],
            env={**os.environ, "DOCKER_HOST": docker.host, "IMAGE_TAG": TAG},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"hack/images/build.sh took more than {BUILD_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ImageBuildError(f"hack/images/build.sh failed (exit {result.returncode}):\n{tail}")
    return dict(IMAGES)


def wait_until_running(
    docker: Docker, container: str, ready: Callable[[], T], timeout_s: float, what: str
) -> T:
    """Poll ``ready()`` until it returns something truthy; fail (with the logs) once the container exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = ready()
        if value:
            return value
        if not docker.state(container)["Running"]:
            raise AssertionError(f"{what}: the container exited:\n{docker.logs(container)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s:\n{docker.logs(container)}")
        time.sleep(0.2)
