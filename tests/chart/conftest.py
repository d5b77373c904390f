"""Fixtures of the chart tests: the chart through the Helm SDK, and a real Kubernetes apiserver.

Rendering and linting need no cluster. Install and RBAC tests (marker ``e2e``) use the cluster
``KUBECONFIG`` points at, or else start hack/kube's local control plane for the session; where
neither is possible they skip, and in CI (``CI=true``) they fail.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.conftest import missing_service

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "pirate-workers"
HACK_KUBE = ROOT / "hack" / "kube"
RELEASE = "pw"


def is_hook(document: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (document["metadata"].get("annotations") or {})


class Rendered:
    """One offline render: the release's objects, its hooks (test, pre-delete), and NOTES.txt."""

    def __init__(self, templates: dict[str, str]) -> None:
        self.templates = templates
        self.notes = next((text for path, text in templates.items() if path.endswith("NOTES.txt")), "")
        documents: list[dict[str, Any]] = [
            document
            for path, text in sorted(templates.items())
            if not path.endswith(".txt")
            for document in yaml.safe_load_all(text)
            if document
        ]
        self.objects = [document for document in documents if not is_hook(document)]
        self.hooks = [document for document in documents if is_hook(document)]

    def hook(self, kind: str, event: str) -> dict[str, Any]:
        """The one hook of ``kind`` that runs on ``event`` (test, pre-delete, ...)."""
        (found,) = [
            h
            for h in self.hooks
            if h["kind"] == kind and event in h["metadata"]["annotations"]["helm.sh/hook"]
        ]
        return found

    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected exactly one {kind}, got {[o['metadata']['name'] for o in found]}"
        return found[0]


@pytest.fixture(scope="session")
def chart() -> Iterator[helm_python.Chart]:
    with helm_python.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: helm_python.Chart) -> Any:
    """render(values, namespace=...) → :class:`Rendered`; raises the SDK's error on a bad render."""

    def _render(values: dict[str, Any] | None = None, namespace: str = "pirates") -> Rendered:
        return Rendered(chart.render(values or {}, name=RELEASE, namespace=namespace))

    return _render


# --- a real cluster ----------------------------------------------------------------------------


def _start_local_control_plane(directory: Path) -> Path:
    result = subprocess.run(
        [str(HACK_KUBE / "start.sh"), str(directory)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        reason = next((line for line in lines if "ERROR" in line), lines[-1])
        missing_service(f"local Kubernetes control plane (hack/kube/start.sh) did not start: {reason}")
    return directory / "kubeconfig"


@pytest.fixture(scope="session")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A kubeconfig with cluster-admin rights: $KUBECONFIG, else a fresh hack/kube control plane."""
    existing = os.environ.get("KUBECONFIG")
    if existing:
        yield Path(existing)
        return
    directory = tmp_path_factory.mktemp("kube")
    config = _start_local_control_plane(directory)
    try:
        yield config
    finally:
        subprocess.run([str(HACK_KUBE / "stop.sh"), str(directory)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> Any:
    """A kubernetes ApiClient for the admin kubeconfig."""
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture
def new_namespace(kube: Any) -> Iterator[Any]:
    """new_namespace() → the name of a fresh namespace, deleted after the test."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    created: list[str] = []

    def _create(prefix: str = "chart") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        created.append(name)
        return name

    yield _create
    for name in created:
        core.delete_namespace(name)


@pytest.fixture
def helm(kubeconfig: Path) -> Iterator[Any]:
    """helm(namespace) → a helm_python.Config for that namespace (closed after the test)."""
    configs: list[helm_python.Config] = []

    def _config(namespace: str) -> helm_python.Config:
        config = helm_python.Config(kubeconfig_path=kubeconfig, namespace=namespace)
        configs.append(config)
        return config

    yield _config
    for config in configs:
        config.close()


def service_account_kubeconfig(kube: Any, admin_kubeconfig: Path, namespace: str, account: str) -> str:
    """A kubeconfig for ``admin_kubeconfig``'s cluster that authenticates as a ServiceAccount.

    The token comes from the TokenRequest API, so requests made with it are authorized by the
    account's real RBAC bindings, exactly as inside a pod.
    """
    from kubernetes import client

    token = (
        client.CoreV1Api(kube)
        .create_namespaced_service_account_token(
            account,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        )
        .status.token
    )
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    cluster = dict(next(c["cluster"] for c in admin["clusters"] if c["name"] == context["cluster"]))
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [
                {"name": account, "context": {"cluster": "cluster", "user": account, "namespace": namespace}}
            ],
            "current-context": account,
        }
    )
