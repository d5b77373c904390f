"""The pre-delete hook's program, run for real against the apiserver with the hook's own RBAC.

The operator keeps a finalizer on every pool it scales (kopf daemons need one), and `helm
uninstall` deletes custom resources last, after the operator and its RBAC. The chart's
pre-delete hook therefore deletes the default pool first and waits until the operator has let
it go. Without a kubelet the hook's Job cannot run here, so this runs the exact program the Job
would, as the hook's ServiceAccount (a TokenRequest token, so the hook's Role is what is tested),
with a stand-in releasing the finalizer the way the operator does after stopping its daemon.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART_DIR, RELEASE, service_account_kubeconfig
from tests.conftest import missing_service

pytestmark = pytest.mark.e2e

GROUP, VERSION, PLURAL = "pirateradio.dev", "v1alpha1", "pirateworkerpools"
FINALIZER = "pirateradio.dev/finalizer"
POOL = f"{RELEASE}-pirate-workers"


@pytest.fixture(scope="module")
def crd(kube: Any) -> None:
    """The PirateWorkerPool CRD, established (applied from the chart's crds/ when missing)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.ApiextensionsV1Api(kube)
    manifest = yaml.safe_load((CHART_DIR / "crds" / "pirateworkerpools.pirateradio.dev.yaml").read_text())
    try:
        api.create_custom_resource_definition(manifest)
    except ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while True:
        conditions = api.read_custom_resource_definition(manifest["metadata"]["name"]).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        assert time.monotonic() < deadline, "CRD not established"
        time.sleep(0.2)


@pytest.fixture
def hook(render: Any, new_namespace: Any, kube: Any, kubeconfig: Path, tmp_path: Path, crd: None) -> Any:
    """The pre-delete hook of a render for a fresh namespace, its RBAC created, and how to run it."""
    from kubernetes import client

    namespace = new_namespace("cleanup")
    rendered = render(namespace=namespace)
    job = rendered.hook("Job", "pre-delete")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    account = rendered.hook("ServiceAccount", "pre-delete")
    core.create_namespaced_service_account(namespace, account)
    rbac.create_namespaced_role(namespace, rendered.hook("Role", "pre-delete"))
    rbac.create_namespaced_role_binding(namespace, rendered.hook("RoleBinding", "pre-delete"))
    hook_kubeconfig = tmp_path / "hook-kubeconfig"
    hook_kubeconfig.write_text(
        service_account_kubeconfig(kube, kubeconfig, namespace, account["metadata"]["name"])
    )

    def run(timeout_s: int, pool: str = POOL) -> subprocess.CompletedProcess[str]:
        env = {item["name"]: item["value"] for item in container["env"]}
        env.update(POOL_NAME=pool, TIMEOUT_SECONDS=str(timeout_s))
        assert container["command"][:2] == ["python", "-c"]
        return subprocess.run(
            [sys.executable, "-c", container["command"][2]],
            env={**os.environ, **env, "KUBECONFIG": str(hook_kubeconfig)},
            capture_output=True,
            text=True,
            timeout=timeout_s + 30,
            check=False,
        )

    run.namespace = namespace  # type: ignore[attr-defined]
    return run


def create_pool(kube: Any, namespace: str, name: str = POOL) -> None:
    from kubernetes import client

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PirateWorkerPool",
        "metadata": {"name": name, "finalizers": [FINALIZER]},
        "spec": {
            "image": "pirate-worker:test",
            "redis": {"url": "redis://redis:6379/0"},
            "provider": {"name": "rules"},
        },
    }
    client.CustomObjectsApi(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def get_pool(kube: Any, namespace: str, name: str = POOL) -> Any:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def release_finalizer_when_deleted(kube: Any, namespace: str, stop: threading.Event) -> None:
    """What the operator does on deletion: stop the pool's daemon, then remove its finalizer."""
    from kubernetes import client

    api = client.CustomObjectsApi(kube)
    while not stop.is_set():
        pool = get_pool(kube, namespace)
        if pool is None:
            return
        if pool["metadata"].get("deletionTimestamp"):
            time.sleep(1.0)  # a polling cycle finishing
            patch = {"metadata": {"finalizers": None}}
            api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, POOL, patch)
            return
        time.sleep(0.2)


def test_hook_deletes_the_pool_and_waits_for_the_operator_to_release_it(hook: Any, kube: Any) -> None:
    namespace = hook.namespace
    create_pool(kube, namespace)
    stop = threading.Event()
    operator = threading.Thread(
        target=release_finalizer_when_deleted, args=(kube, namespace, stop), daemon=True
    )
    operator.start()
    try:
        result = hook(timeout_s=60)
    finally:
        stop.set()
        operator.join(timeout=5)

    assert result.returncode == 0, result.stderr
    assert f"pool {namespace}/{POOL} is gone" in result.stdout
    assert get_pool(kube, namespace) is None


def test_hook_fails_with_the_fix_when_nothing_releases_the_pool(
    hook: Any, kube: Any, kubeconfig: Path
) -> None:
    namespace = hook.namespace
    create_pool(kube, namespace)

    started = time.monotonic()
    result = hook(timeout_s=3)

    assert result.returncode == 1
    assert time.monotonic() - started < 20
    assert "the operator did not remove its finalizer" in result.stderr
    assert get_pool(kube, namespace)["metadata"]["deletionTimestamp"]
    # The printed remedy works as printed.
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing_service("kubectl (hack/kube/build.sh installs one)")
    (fix,) = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("kubectl ")]
    argv = [kubectl, "--kubeconfig", str(kubeconfig), *shlex.split(fix)[1:]]
    subprocess.run(argv, check=True, capture_output=True)
    deadline = time.monotonic() + 10
    while get_pool(kube, namespace) is not None:
        assert time.monotonic() < deadline, "the pool survived removing its finalizer"
        time.sleep(0.2)


def test_hook_succeeds_when_the_pool_is_already_gone(hook: Any) -> None:
    result = hook(timeout_s=10)
    assert result.returncode == 0, result.stderr
    assert "nothing to clean up" in result.stdout


def test_hook_can_delete_only_the_charts_own_pool(hook: Any, kube: Any) -> None:
    namespace = hook.namespace
    create_pool(kube, namespace, name="someone-elses")
    try:
        result = hook(timeout_s=10, pool="someone-elses")

        assert result.returncode != 0
        assert "Forbidden" in result.stderr
        assert "Traceback" not in result.stderr, "a refused delete is one line, not a traceback"
        assert get_pool(kube, namespace, "someone-elses")["metadata"].get("deletionTimestamp") is None
    finally:
        from kubernetes import client

        patch = {"metadata": {"finalizers": None}}
        client.CustomObjectsApi(kube).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "someone-elses", patch
        )
