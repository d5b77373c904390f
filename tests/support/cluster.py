"""The cluster tier's node (DESIGN §8): a real kubelet, kube-proxy, cluster DNS and dockerd.

``start_cluster()`` reuses, in this order: ``KUBECONFIG`` + ``DOCKER_HOST`` when both are set and
answer (the images the tests use must be in that daemon); the node ``make cluster`` runs on this
machine (never another test session's node, which goes away with that session); else it starts
one with ``hack/cluster/start.sh`` in a temporary directory, which ``Cluster.stop()`` stops again.
It raises :class:`ClusterUnavailable` with the reason when none of that works; the fixtures turn
that into a failure in CI and a skip elsewhere.

Everything that waits polls with a deadline (``tests.support.kube.poll``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import poll

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"
RUN_DIR = Path(os.environ.get("PIRATE_RUN_DIR", "/run/pirate-workers"))
#: Written by hack/cluster/start.sh: the directory of the node running on this machine.
NODE_MARKER = RUN_DIR / "node-dir"
#: In the directory of a node a test session started: that session's pid (it stops the node at its end).
SESSION_FILE = "harness-session"
#: Debian's docker.io client: it matches the daemon hack/cluster/docker.sh runs.
DOCKER = "/usr/bin/docker"
BUSYBOX = Path("/bin/busybox")


class ClusterUnavailable(Exception):
    """No node to run pods on, and hack/cluster could not start one."""


@dataclass
class Cluster:
    """A node to run pods on: how to reach its apiserver and its container runtime."""

    kubeconfig: Path
    docker_host: str
    node_name: str
    #: hack/cluster's directory (logs, certificates, configuration) when the node is ours.
    dir: Path | None
    #: Whether :meth:`stop` stops the node (only the one this process started).
    owned: bool = False

    def stop(self) -> None:
        """Stop the node this process started; its logs stay in ``dir``, etcd's 60 MB of data go."""
        if self.owned and self.dir is not None:
            stopped = subprocess.run(
                [str(HACK / "cluster" / "stop.sh"), str(self.dir)],
                capture_output=True,
                timeout=120,
                check=False,
            )
            if stopped.returncode == 0:
                shutil.rmtree(self.dir / "etcd", ignore_errors=True)

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl --kubeconfig=<this cluster> ARGS``; raises with stderr when it fails and ``check``."""
        result = subprocess.run(
            [kubectl_binary(), f"--kubeconfig={self.kubeconfig}", *args],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 120) -> str:
        """Debian's docker client against the node's daemon; returns stdout."""
        result = subprocess.run(
            [DOCKER, *args], input=input, capture_output=True, timeout=timeout, check=False,
            env={**os.environ, "DOCKER_HOST": self.docker_host},
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"docker {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
        return result.stdout.decode()

    def apply(self, *manifests: dict[str, Any], namespace: str) -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(manifests))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        scope = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, name, *scope, "-o", "json", "--ignore-not-found", check=False)
        if result.returncode != 0:
            raise AssertionError(f"kubectl get {kind}/{name}: {result.stderr.strip()}")
        return json.loads(result.stdout) if result.stdout.strip() else None

    def pods(self, namespace: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace, "-o", "json"] + (["-l", selector] if selector else [])
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args).stdout)["items"]
        return items

    def wait_for_pods_ready(
        self, namespace: str, selector: str | None = None, count: int = 1, timeout: float = 90
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` pods (matching ``selector``) are Ready; on timeout, say why they are not."""
        pods: list[dict[str, Any]] = []

        def ready() -> list[dict[str, Any]]:
            nonlocal pods
            pods = self.pods(namespace, selector)
            ready_pods = [pod for pod in pods if is_ready(pod)]
            return ready_pods if len(ready_pods) >= count else []

        try:
            return poll(ready, timeout, f"{count} pod(s) {selector or ''} Ready in {namespace}", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe_pods(pods)}") from None

    def wait_for_pod_phase(
        self, namespace: str, name: str, phase: str, timeout: float = 90
    ) -> dict[str, Any]:
        """Wait until the pod reaches ``phase`` (e.g. Succeeded); fail at once when it ends otherwise."""

        def reached() -> dict[str, Any]:
            pod = self.get("pod", name, namespace)
            current = (pod or {}).get("status", {}).get("phase")
            if current in ("Succeeded", "Failed") and current != phase:
                logs = self.kubectl("logs", "-n", namespace, name, check=False).stdout
                raise AssertionError(
                    f"pod {name} ended {current}, not {phase}:\n{logs}\n{describe_pods([pod or {}])}"
                )
            return pod if pod and current == phase else {}

        return poll(reached, timeout, f"pod {namespace}/{name} {phase}", interval=0.2)

    def create_namespace(self, name: str) -> None:
        """Create ``name`` and wait for its default ServiceAccount token (1.20 refuses pods until then)."""
        self.kubectl("create", "namespace", name)

        def has_token() -> bool:
            account = self.get("serviceaccount", "default", name)
            return bool(account and account.get("secrets"))

        poll(has_token, 30, f"ServiceAccount default in {name} with its token", interval=0.2)


class PodWatch:
    """``kubectl get pods -w -o json`` in a thread: every version of the namespace's pods, timestamped.

    A watch sees each status the kubelet reports, even one that only lives for a moment before
    the pod is deleted (a container's exit code, for instance), which polling can miss.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._process = subprocess.Popen(
            [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}", "get", "pods", "-n", namespace,
             "--watch", "-o", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        decoder, buffer = json.JSONDecoder(), ""
        for line in self._process.stdout:  # objects are printed indented, one field per line
            buffer += line
            try:
                pod, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            self.seen.append((time.monotonic(), pod))
            buffer = buffer.lstrip()[end:]

    def container_exits(self, container: str = "main") -> dict[str, tuple[float, int]]:
        """Per pod name: when this watch first saw ``container`` terminated, and its exit code."""
        exits: dict[str, tuple[float, int]] = {}
        for seen_at, pod in list(self.seen):
            name = pod["metadata"]["name"]
            for status in pod.get("status", {}).get("containerStatuses") or []:
                terminated = status.get("state", {}).get("terminated")
                if status["name"] == container and terminated and name not in exits:
                    exits[name] = (seen_at, terminated["exitCode"])
        return exits

    def close(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def describe_pods(pods: list[dict[str, Any]]) -> str:
    """One line per pod and container: phase, conditions, waiting/terminated reasons."""
    lines = []
    for pod in pods:
        status = pod.get("status", {})
        conditions = ", ".join(
            f"{c['type']}={c['status']}{' (' + c['message'] + ')' if c.get('message') else ''}"
            for c in status.get("conditions") or []
        )
        lines.append(f"  {pod.get('metadata', {}).get('name')}: {status.get('phase')} [{conditions}]")
        for container in status.get("containerStatuses") or []:
            lines.append(f"    {container['name']}: {container.get('state')}")
    return "\n".join(lines) or "  (no pods)"


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found:
        return found
    cached = Path.home() / ".cache" / "pirate-workers" / "kube-1.20.2" / "bin" / "kubectl"
    if cached.exists():
        return str(cached)
    raise ClusterUnavailable("no kubectl on PATH (hack/kube/build.sh builds one when missing)")


def start_cluster() -> Cluster:
    """The given cluster, the one `make cluster` runs, or a new node (see the module's docstring)."""
    given = _given_cluster()
    if given is not None:
        return given
    running = _running_node()
    if running is not None:
        return running
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting the node needs root (kubelet, iptables, the pod network)")
    build = subprocess.run([str(HACK / "kube" / "build.sh")], capture_output=True, text=True, check=False)
    if build.returncode != 0:
        raise ClusterUnavailable(f"hack/kube/build.sh failed: {_error_line(build.stderr)}")
    directory = Path(tempfile.mkdtemp(prefix="pirate-cluster-"))
    (directory / SESSION_FILE).write_text(str(os.getpid()))
    started = subprocess.run(
        [str(HACK / "cluster" / "start.sh"), str(directory)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if started.returncode != 0:
        raise ClusterUnavailable(
            f"hack/cluster/start.sh failed: {_error_line(started.stderr)} (logs in {directory})"
        )
    return _from_env_file(directory, owned=True)


def _given_cluster() -> Cluster | None:
    kubeconfig, docker_host = os.environ.get("KUBECONFIG"), os.environ.get("DOCKER_HOST")
    if not (kubeconfig and docker_host and Path(kubeconfig).is_file()):
        return None
    candidate = Cluster(kubeconfig=Path(kubeconfig), docker_host=docker_host, node_name="", dir=None)
    try:
        candidate.docker("version", timeout=10)
        nodes = json.loads(candidate.kubectl("get", "nodes", "-o", "json", timeout=15).stdout)["items"]
    except (AssertionError, subprocess.TimeoutExpired, ValueError):
        return None  # set but not answering (or not a cluster with nodes): start our own
    ready = [node for node in nodes if is_ready(node)]
    if not ready:
        return None
    candidate.node_name = ready[0]["metadata"]["name"]
    return candidate


def _running_node() -> Cluster | None:
    try:
        directory = Path(NODE_MARKER.read_text().strip())
    except OSError:
        return None
    session = directory / SESSION_FILE
    if session.is_file():  # written before start.sh runs, so also seen while that node starts
        # Another test session's node goes away when that session ends: never build on it.
        pid = int(session.read_text() or 0)
        if _alive(pid):
            raise ClusterUnavailable(
                f"the node on this machine belongs to another test session (pid {pid}, {directory}); "
                "one node per machine: wait for it, or share one with `make cluster`"
            )
        # That session died without stopping its node: clean up after it and start a new one.
        subprocess.run([str(HACK / "cluster" / "stop.sh"), str(directory)], capture_output=True, check=False)
        return None
    if not (directory / "env").is_file():
        return None
    cluster = _from_env_file(directory, owned=False)
    try:
        node = cluster.get("node", cluster.node_name)
    except (AssertionError, subprocess.TimeoutExpired):
        return None
    return cluster if node and is_ready(node) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _from_env_file(directory: Path, owned: bool) -> Cluster:
    values = dict(
        line.split("=", 1) for line in (directory / "env").read_text().splitlines() if "=" in line
    )  # fmt: skip
    try:
        return Cluster(
            kubeconfig=Path(values["KUBECONFIG"]), docker_host=values["DOCKER_HOST"],
            node_name=values["PIRATE_NODE_NAME"], dir=directory, owned=owned,
        )  # fmt: skip
    except KeyError as exc:
        raise ClusterUnavailable(f"{directory}/env lacks {exc}") from None


def _error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if "ERROR" in line]
    return errors[-1] if errors else stderr.strip()[-400:]


# --- the tier's smallest image ---------------------------------------------------------------
def busybox_image(cluster: Cluster) -> str:
    """``pirate-workers/busybox:<digest>``: Debian's static busybox with its applets, imported once.

    No base image and nothing downloaded: a tar of ``/bin/busybox`` (package busybox-static) and one
    symlink per applet, ``docker import``-ed into the node's daemon. Tagged by the binary's digest,
    so a new busybox makes a new image.
    """
    binary = BUSYBOX.read_bytes() if BUSYBOX.is_file() else b""
    if not binary or _is_dynamic_elf(binary):
        raise ClusterUnavailable("no static /bin/busybox (apt-get install busybox-static)")
    tag = f"pirate-workers/busybox:{hashlib.sha256(binary).hexdigest()[:12]}"
    try:
        cluster.docker("image", "inspect", tag, timeout=30)
        return tag
    except AssertionError:
        pass
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(binary), 0o755, int(time.time())
        tar.addfile(info, io.BytesIO(binary))
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    cluster.docker("import", "--change", "ENV PATH=/bin", "-", tag, input=archive.getvalue())
    return tag


def _is_dynamic_elf(binary: bytes) -> bool:
    """Whether the ELF64 binary asks for a program interpreter (PT_INTERP), i.e. is not static."""
    if binary[:5] != b"\x7fELF\x02":
        return True
    (phoff,) = struct.unpack_from("<Q", binary, 32)
    entry_size, count = struct.unpack_from("<HH", binary, 54)
    return any(struct.unpack_from("<I", binary, phoff + i * entry_size)[0] == 3 for i in range(count))
