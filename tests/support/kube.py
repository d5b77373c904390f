"""e2e support: a real control plane (an existing KUBECONFIG or hack/kube), API helpers, and the
operator as a real subprocess. Everything waits by polling with a deadline, never by sleeping blind.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from pirate_operator.api import GROUP, PLURAL, VERSION, crd_yaml
from pirate_worker.runtime.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack" / "kube"
PIRATE_WORKERS = ROOT / ".venv" / "bin" / "pirate-workers"
#: An environment shaped like the operator image (see :func:`operator_executable`).
OPERATOR_ENV = Path.home() / ".cache" / "pirate-workers" / "operator-env"
T = TypeVar("T")


@functools.cache
def operator_executable() -> Path:
    """``pirate-workers`` of an environment shaped like the operator image, synced once per process.

    The image installs the locked ``operator`` extra only, the project non-editable; the
    development ``.venv`` also holds the test suite's ``kubernetes`` client, which kopf would pick
    up for logging in. Running the operator from the image-shaped environment tests what ships.
    """
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(OPERATOR_ENV))
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "uv"), "sync", "--frozen", "--no-dev", "--no-editable", "--quiet",
         "--extra", "operator", "--reinstall-package", "pirate-workers"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return OPERATOR_ENV / "bin" / "pirate-workers"


class ControlPlaneUnavailable(Exception):
    """No reachable cluster and hack/kube could not start one."""


def poll(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def holds(predicate: Callable[[], bool], duration: float, what: str, interval: float = 0.1) -> None:
    """Fail as soon as ``predicate`` turns false within ``duration`` seconds."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"{what} stopped holding"
        time.sleep(interval)


@dataclass
class ControlPlane:
    """A cluster to test against: its kubeconfig, and the hack/kube directory if we started it."""

    kubeconfig: Path
    started_dir: Path | None = None

    def stop(self) -> None:
        if self.started_dir is not None:
            subprocess.run([str(HACK / "stop.sh"), str(self.started_dir)], check=False, capture_output=True)


def _reachable(kubeconfig: Path) -> bool:
    try:
        api = k8s.ApiClient(_configuration(kubeconfig))
        k8s.VersionApi(api).get_code(_request_timeout=5)
        api.close()  # type: ignore[no-untyped-call]
    except Exception:
        return False
    return True


def start_control_plane() -> ControlPlane:
    """``KUBECONFIG`` if it answers, else a fresh hack/kube control plane in a temp dir."""
    existing = os.environ.get("KUBECONFIG")
    if existing:
        path = Path(existing)
        if path.is_file() and _reachable(path):
            return ControlPlane(kubeconfig=path)
        raise ControlPlaneUnavailable(f"KUBECONFIG={existing} is set but no cluster answers")
    directory = Path(tempfile.mkdtemp(prefix="pirate-kube-"))
    result = subprocess.run(
        [str(HACK / "start.sh"), str(directory)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
        reason = errors[-1] if errors else result.stderr.strip()[-300:]
        raise ControlPlaneUnavailable(f"hack/kube/start.sh failed: {reason}")
    return ControlPlane(kubeconfig=directory / "kubeconfig", started_dir=directory)


def _configuration(kubeconfig: Path) -> k8s.Configuration:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class Kube:
    """The API calls the e2e tests make, returning plain dicts."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.api_client = k8s.ApiClient(_configuration(kubeconfig))
        self.core = k8s.CoreV1Api(self.api_client)
        self.apps = k8s.AppsV1Api(self.api_client)
        self.custom = k8s.CustomObjectsApi(self.api_client)
        self.extensions = k8s.ApiextensionsV1Api(self.api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data) if response.data else {}

    # --- CRDs ---------------------------------------------------------------------------------
    def apply_crd(self, manifest: dict[str, Any]) -> None:
        """Create or replace a CRD and wait until it is established."""
        name = manifest["metadata"]["name"]
        try:
            current = self._json(
                self.extensions.read_custom_resource_definition(name, _preload_content=False)
            )
            body = {
                **manifest,
                "metadata": {
                    **manifest["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            self.extensions.replace_custom_resource_definition(name, body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.extensions.create_custom_resource_definition(manifest, _preload_content=False)

        def established() -> bool:
            crd = self._json(self.extensions.read_custom_resource_definition(name, _preload_content=False))
            return any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in (crd.get("status") or {}).get("conditions") or []
            )

        poll(established, 30, f"CRD {name} established")

    def apply_pool_crd(self) -> None:
        """The PirateWorkerPool CRD exactly as ``pirate-workers crd`` prints it."""
        self.apply_crd(yaml.safe_load(crd_yaml()))

    def has_real_nodes(self) -> bool:
        """Whether kubelets run here (kind, a real cluster); hack/kube has none, only fake Nodes."""
        found = self._json(self.core.list_node(_preload_content=False))
        return any(
            node["metadata"].get("labels", {}).get("pirate-e2e") != "fake" for node in found.get("items", [])
        )

    # --- namespaces ---------------------------------------------------------------------------
    def create_namespace(self, name: str) -> None:
        self.core.create_namespace(
            {"metadata": {"name": name, "labels": {"pirate-workers-e2e": "true"}}}, _preload_content=False
        )

        def service_account_ready() -> bool:
            try:
                account = self._json(
                    self.core.read_namespaced_service_account("default", name, _preload_content=False)
                )
            except ApiException:
                return False
            return bool(account.get("secrets")) or not self._token_secrets_expected()

        poll(service_account_ready, 60, f"default ServiceAccount of {name}")

    def _token_secrets_expected(self) -> bool:
        version = self._json(k8s.VersionApi(self.api_client).get_code(_preload_content=False))
        minor = int("".join(ch for ch in version.get("minor", "0") if ch.isdigit()) or 0)
        return minor < 24

    def purge_namespace(self, name: str) -> None:
        """Drop the finalizers of the namespace's pools (their operator is gone) and delete it."""
        with contextlib.suppress(ApiException):
            for pool in self.list_pools(name):
                self.patch_pool(name, pool["metadata"]["name"], {"metadata": {"finalizers": None}})
        with contextlib.suppress(ApiException):
            self.core.delete_namespace(name, _preload_content=False)

    # --- pools --------------------------------------------------------------------------------
    def create_pool(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, _preload_content=False
            )
        )

    def get_pool(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def list_pools(self, namespace: str) -> list[dict[str, Any]]:
        found = self._json(
            self.custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _preload_content=False
            )
        )
        return list(found.get("items", []))

    def patch_pool(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._json(
            self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )

    def delete_pool(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )

    def condition(self, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
        pool = self.get_pool(namespace, name) or {}
        for condition in pool.get("status", {}).get("conditions", []):
            if condition.get("type") == kind:
                return dict(condition)
        return None

    # --- workloads ----------------------------------------------------------------------------
    def deployments(self, namespace: str) -> dict[str, dict[str, Any]]:
        found = self._json(self.apps.list_namespaced_deployment(namespace, _preload_content=False))
        return {item["metadata"]["name"]: item for item in found.get("items", [])}

    def replicas(self, namespace: str, name: str) -> int | None:
        deployment = self.deployments(namespace).get(name)
        if deployment is None:
            return None
        return int(deployment["spec"].get("replicas", 1))

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        found = self._json(
            self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        )
        return list(found.get("items", []))

    def events(self, namespace: str, reason: str | None = None) -> list[dict[str, Any]]:
        found = self._json(self.core.list_namespaced_event(namespace, _preload_content=False))
        items = [e for e in found.get("items", []) if e["involvedObject"].get("kind") == "PirateWorkerPool"]
        return [e for e in items if reason is None or e.get("reason") == reason]

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "stringData": data}, _preload_content=False
        )


def pool_manifest(name: str, redis_url: str, **spec: Any) -> dict[str, Any]:
    """A PirateWorkerPool with the rules provider (offline) unless ``spec`` says otherwise."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PirateWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "image": "ghcr.io/example/pirate-worker:0.1.0",
            "redis": {"url": redis_url},
            "provider": {"name": "rules"},
            **spec,
        },
    }


class OperatorProcess:
    """``pirate-workers operator`` as a real subprocess, with its /healthz + /metrics port."""

    def __init__(
        self, kubeconfig: Path, namespace: str, log_path: Path, executable: Path | None = None, **env: str
    ) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("ab")
        environment = dict(os.environ)
        for name in ("OPERATOR_NAMESPACES", "POD_NAMESPACE", "OPERATOR_PEERING", "OPERATOR_PEERING_PRIORITY"):
            environment.pop(name, None)
        environment.update(
            {"KUBECONFIG": str(kubeconfig), "OPERATOR_HTTP_PORT": str(self.port), "LOG_LEVEL": "INFO", **env}
        )
        self.proc = subprocess.Popen(
            [str(executable or operator_executable()), "operator", "--namespace", namespace],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        self.started_at = time.monotonic()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url("/healthz"), timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def wait_healthy(self, timeout: float = 30) -> OperatorProcess:
        def ready() -> bool:
            assert self.proc.poll() is None, f"operator exited early:\n{self.log_tail()}"
            return self.healthy()

        poll(ready, timeout, "operator /healthz")
        return self

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of /metrics (None if absent)."""
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, label_text = series.partition("{")
            if metric_name != name:
                continue
            found = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
            if all(found.get(key, "").strip('"') == wanted for key, wanted in labels.items()):
                return float(value)
        return None

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait (kopf stops its daemons and leaves the peering); SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no goodbye to the peers, no cleanup."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


#: kopf's namespaced peering CRD (kopf.dev/v1 KopfPeering), as its documentation gives it.
KOPF_PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "scope": "Namespaced",
        "group": "kopf.dev",
        "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                        },
                    }
                },
            }
        ],
    },
}


def create_peering(kube: Kube, namespace: str, name: str) -> None:
    kube.custom.create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}},
        _preload_content=False,
    )


@contextlib.contextmanager
def operator_running(
    kubeconfig: Path, namespace: str, log_path: Path, **env: str
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(kubeconfig, namespace, log_path, **env)
    try:
        yield process.wait_healthy()
    finally:
        process.stop()
