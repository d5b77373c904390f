"""A role's local "replicas": one ``pirate-workers worker`` process each, named like a pod.

Scale-in prefers idle processes (the local counterpart of pod-deletion-cost) and stops them with
SIGTERM, so a process in the middle of a job finishes it first (warm shutdown).
"""

from __future__ import annotations

import itertools
import logging
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pirate_operator.api.roles import EffectiveRole

log = logging.getLogger(__name__)


@dataclass
class LocalReplica:
    name: str
    process: subprocess.Popen[bytes]


@dataclass
class ProcessActuator:
    """Starts and stops the worker processes of one role."""

    role: EffectiveRole
    env: Mapping[str, str]
    log_dir: Path
    running: list[LocalReplica] = field(default_factory=list)
    draining: list[LocalReplica] = field(default_factory=list)
    _serial: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def replicas(self) -> int:
        """Processes that take new work (draining ones are finishing their last job)."""
        self._reap()
        return len(self.running)

    def scale_to(self, desired: int, busy_by_pod: Mapping[str, int]) -> None:
        self._reap()
        while len(self.running) < desired:
            self.running.append(self._start())
        if len(self.running) > desired:
            # Idle first, like pod-deletion-cost: fewest busy workers leave first, newest on ties.
            order = sorted(self.running, key=lambda r: (busy_by_pod.get(r.name, 0), -self.running.index(r)))
            for replica in order[: len(self.running) - desired]:
                self.running.remove(replica)
                replica.process.send_signal(signal.SIGTERM)
                self.draining.append(replica)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Warm-stop every process and wait for them."""
        for replica in self.running:
            replica.process.send_signal(signal.SIGTERM)
        self.draining.extend(self.running)
        self.running.clear()
        for replica in self.draining:
            try:
                replica.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                replica.process.kill()
        self.draining.clear()

    def crashed(self) -> list[str]:
        """Names of running processes that exited on their own (not asked to stop)."""
        return [r.name for r in self.running if r.process.poll() is not None]

    def _start(self) -> LocalReplica:
        name = f"local-{self.role.name}-{next(self._serial)}"
        cmd = [sys.executable, "-m", "pirate_worker", "worker", "--role", self.role.name]
        cmd += ["--count", str(self.role.workers_per_pod), "--health-port", "0"]
        if not self.role.builtin:
            cmd += ["--queues", ",".join(self.role.queues)]
        env = {**self.env, "POD_NAME": name}
        with (self.log_dir / f"worker-{self.role.name}.log").open("ab") as out:
            process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        log.debug("started %s (pid %s)", name, process.pid)
        return LocalReplica(name, process)

    def _reap(self) -> None:
        self.draining = [r for r in self.draining if r.process.poll() is None]
        self.running = [r for r in self.running if r.process.poll() is None]
