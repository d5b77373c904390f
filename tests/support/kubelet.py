"""A fake kubelet for the hack/kube control plane (which has no scheduler and no kubelet).

It registers a Node, binds the Pending pods of the operator's Deployments to it, starts each
pod's worker command as a local process (the pod's env with Secrets and the downward API resolved,
so worker names start with the pod name), reports the pod Running/Ready, and on deletion sends
the process SIGTERM, waits up to the pod's grace period, then removes the pod with grace 0. That
is enough to prove drain-aware scale-in end to end: warm shutdown, busy workers, deletion costs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from pirate_operator.kube.names import MANAGED_BY_LABEL, MANAGER
from pirate_worker.runtime.embedded_redis import free_port
from tests.support.kube import PIRATE_WORKERS, Kube

logger = logging.getLogger(__name__)
STRATEGIC = "application/strategic-merge-patch+json"


@dataclass
class PodProcess:
    pod: str
    proc: subprocess.Popen[bytes]
    started_at: float
    grace_seconds: int
    term_sent_at: float | None = None
    exited_at: float | None = None
    log: Path | None = None


@dataclass
class FakeKubelet:
    kube: Kube
    namespace: str
    workdir: Path
    node: str = ""
    #: Extra environment for every worker process (wins over the pod's).
    env: dict[str, str] = field(default_factory=dict)
    interval: float = 0.2
    processes: dict[str, PodProcess] = field(default_factory=dict)
    finished: dict[str, PodProcess] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = self.node or f"fake-{self.namespace}"[:63]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"kubelet-{self.namespace}", daemon=True)
        self._lock = threading.Lock()
        self._deleted: set[str] = set()

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeKubelet:
        self._register_node()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for process in list(self.processes.values()):
            if process.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in list(self.processes.values()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.proc.pid, signal.SIGKILL)
                process.proc.wait(timeout=10)
        for pod in self.kube.pods(self.namespace):
            if pod["spec"].get("nodeName") == self.node:
                self._force_delete(pod["metadata"]["name"])
        with contextlib.suppress(ApiException):
            self.kube.core.delete_node(self.node, _preload_content=False)

    # --- what the tests read ------------------------------------------------------------------
    def running(self) -> list[str]:
        with self._lock:
            return sorted(name for name, p in self.processes.items() if p.proc.poll() is None)

    # --- the loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep playing kubelet; the test will see the error list
                logger.exception("fake kubelet sync failed")
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def _sync(self) -> None:
        pods = self.kube.pods(self.namespace, f"{MANAGED_BY_LABEL}={MANAGER}")
        seen = set()
        for pod in pods:
            name = pod["metadata"]["name"]
            seen.add(name)
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod)
            elif not pod["spec"].get("nodeName"):
                self._bind(name)
            elif pod["spec"]["nodeName"] == self.node and name not in self.processes:
                self._start(pod)
        with self._lock:
            for name, process in list(self.processes.items()):
                if name not in seen and process.proc.poll() is None:
                    os.killpg(process.proc.pid, signal.SIGKILL)

    def _register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node,
                "labels": {"kubernetes.io/hostname": self.node, "pirate-e2e": "fake"},
            },
        }
        with contextlib.suppress(ApiException):
            self.kube.core.create_node(body, _preload_content=False)
        now = _now()
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "FakeKubelet",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            }
        }
        self.kube.core.patch_node_status(self.node, status, _content_type=STRATEGIC, _preload_content=False)

    def _bind(self, pod: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        try:
            self.kube.core.create_namespaced_pod_binding(pod, self.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _start(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if command and command[0] == "pirate-workers":
            command[0] = str(PIRATE_WORKERS)
        directory = self.workdir / name
        directory.mkdir(parents=True, exist_ok=True)
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
        env.update(self._pod_env(pod, container))
        env.update({"HEALTH_PORT": str(free_port()), "OUTPUT_DIR": str(directory / "outputs"), **self.env})
        log = directory / "worker.log"
        with log.open("ab") as sink:
            proc = subprocess.Popen(
                command, cwd=directory, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
        with self._lock:
            self.processes[name] = PodProcess(name, proc, time.monotonic(), grace, log=log)
        self._report_running(pod, proc.pid)

    def _pod_env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            if source is None:
                env[var["name"]] = str(var.get("value", ""))
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = json.loads(
                    self.kube.core.read_namespaced_secret(
                        ref["name"], self.namespace, _preload_content=False
                    ).data
                )
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                env[var["name"]] = {
                    "metadata.name": pod["metadata"]["name"],
                    "metadata.namespace": self.namespace,
                }.get(path, "")
        return env

    def _report_running(self, pod: dict[str, Any], pid: int) -> None:
        now = _now()
        container = pod["spec"]["containers"][0]
        status = {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "startTime": now,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "image": container["image"],
                        "imageID": f"fake://{container['image']}",
                        "containerID": f"fake://{pid}",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }
        try:
            self.kube.core.patch_namespaced_pod_status(
                pod["metadata"]["name"],
                self.namespace,
                status,
                _content_type=STRATEGIC,
                _preload_content=False,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _terminate(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        with self._lock:
            process = self.processes.get(name)
        if process is None:
            self._force_delete(name)
            return
        now = time.monotonic()
        if process.proc.poll() is None:
            if process.term_sent_at is None:
                process.term_sent_at = now
                process.proc.send_signal(signal.SIGTERM)  # the pod's PID 1: the worker supervisor
            elif now - process.term_sent_at > process.grace_seconds:
                os.killpg(process.proc.pid, signal.SIGKILL)
            return
        if process.exited_at is None:
            process.exited_at = now
            self.finished[name] = process
        self._force_delete(name)

    def _force_delete(self, pod: str) -> None:
        if pod in self._deleted:
            return
        try:
            self.kube.core.delete_namespaced_pod(
                pod, self.namespace, grace_period_seconds=0, _preload_content=False
            )
            self._deleted.add(pod)
        except ApiException as exc:
            if exc.status == 404:
                self._deleted.add(pod)
            else:
                raise


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
