"""The real operator, configured and authorized exactly as the chart deploys it.

No kubelet runs here, so the operator Deployment's pod never starts. Instead this runs the pod's
command (`pirate-workers` + the rendered args) as a local process with the rendered environment,
authenticated as the chart's ServiceAccount with a TokenRequest token: every API call it makes
is authorized by the chart's Role, so a missing permission shows up as a failure here. Then the
chart's pre-delete hook program releases the default pool while that operator runs, as
`helm uninstall` does, and the garbage collector removes the worker Deployments it made.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pirate_worker.runtime.embedded_redis import free_port
from tests.chart.conftest import CHART_DIR, RELEASE, service_account_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

T = TypeVar("T")
GROUP, VERSION, PLURAL = "pirateradio.dev", "v1alpha1", "pirateworkerpools"
POOL = f"{RELEASE}-pirate-workers"
OPERATOR = f"{POOL}-operator"
ROLES = ("llm", "reconciler", "recorder")
#: kopf's optional runtime scanning of CRDs and namespaces (cluster scope). It is not part of the
#: operator's RBAC contract; kopf falls back to the namespaces and resources it was given.
OPTIONAL_SCANNING = re.compile(
    r"cannot (list|watch) resource \\?\"(customresourcedefinitions|namespaces)\\?\""
)


def eventually(check: Callable[[], T], what: str, timeout: float, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text().splitlines()[-20:]) if log else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.5)


def healthz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def pod_command(rendered: Any, namespace: str, port: int) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the rendered operator container, as the kubelet would set them."""
    deployment = rendered.one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "the image's ENTRYPOINT (pirate-workers) runs"
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            field = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.namespace": namespace, "metadata.name": f"{OPERATOR}-local"}[field]
    env["OPERATOR_HTTP_PORT"] = str(port)  # the pod's 8080, on a free local port
    return [str(Path(sys.executable).parent / "pirate-workers"), *container["args"]], env


def release_leftover_pool(custom: Any, namespace: str) -> None:
    """After a failure, drop the finalizer no operator will remove, so the namespace can go."""
    from kubernetes.client.exceptions import ApiException

    try:
        patch = {"metadata": {"finalizers": None}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, POOL, patch)
    except ApiException as exc:
        if exc.status != 404:
            raise


def check_durable_results(
    apps: Any, namespace: str, pool: Callable[[], dict[str, Any]], log_path: Path
) -> None:
    """The default pool's results outlive its pods, and the generated passwords stay in their Secrets."""
    from kubernetes import client

    reconciler = apps.read_namespaced_deployment(f"{POOL}-reconciler", namespace).spec.template.spec
    (database_url,) = [env for env in reconciler.containers[0].env if env.name == "DATABASE_URL"]
    reference = database_url.value_from.secret_key_ref
    assert (reference.name, reference.key) == (f"{POOL}-postgresql-auth", "url")
    assert database_url.value is None

    recorder = apps.read_namespaced_deployment(f"{POOL}-recorder", namespace).spec.template.spec
    output_dir = next(env.value for env in recorder.containers[0].env if env.name == "OUTPUT_DIR")
    (mount,) = [m for m in recorder.containers[0].volume_mounts if m.mount_path == output_dir]
    (volume,) = [v for v in recorder.volumes if v.name == mount.name]
    assert volume.persistent_volume_claim.claim_name == f"{POOL}-outputs"

    durable = eventually(
        lambda: next(
            (c for c in pool().get("status", {}).get("conditions", []) if c["type"] == "ResultsNotDurable"),
            None,
        ),
        "the ResultsNotDurable condition",
        30,
        log_path,
    )
    assert (durable["status"], durable["reason"]) == ("False", "Durable")

    core = client.CoreV1Api(apps.api_client)
    for secret in (f"{POOL}-redis-auth", f"{POOL}-postgresql-auth"):
        password = base64.b64decode(core.read_namespaced_secret(secret, namespace).data["password"]).decode()
        seen = str(pool()) + str(core.list_namespaced_event(namespace).to_dict()) + log_path.read_text()
        seen += str(apps.list_namespaced_deployment(namespace).to_dict())
        assert password not in seen, f"the {secret} password left its Secret"


def test_operator_runs_under_the_chart_rbac_and_the_uninstall_hook_releases_its_pool(
    kube: Any, kubeconfig: Path, helm: Any, new_namespace: Any, render: Any, tmp_path: Path
) -> None:
    from kubernetes import client

    namespace = new_namespace("operator")
    values = {"pool": {"uninstallCleanup": {"enabled": False}}}  # its Job cannot run without a kubelet
    config = helm(namespace)
    config.install(CHART_DIR, RELEASE, values, namespace=namespace, timeout=120)
    rendered = render(values, namespace=namespace)
    apps, custom = client.AppsV1Api(kube), client.CustomObjectsApi(kube)

    operator_config = tmp_path / "operator-kubeconfig"
    operator_config.write_text(service_account_kubeconfig(kube, kubeconfig, namespace, OPERATOR))
    port = free_port()
    argv, env = pod_command(rendered, namespace, port)
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env={**os.environ, **env, "KUBECONFIG": str(operator_config)},
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(lambda: healthz(port), "the operator's /healthz", 60, log_path)

        def pool() -> dict[str, Any]:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, POOL
            )
            return found

        def workers() -> list[str]:
            return sorted(d.metadata.name for d in apps.list_namespaced_deployment(namespace).items)

        # kopf retries its optional cluster-scope scanning for about a minute before it serves.
        eventually(
            lambda: pool()["metadata"].get("finalizers"), "the operator to take the pool", 150, log_path
        )
        expected = sorted([OPERATOR, *(f"{POOL}-{role}" for role in ROLES)])
        eventually(lambda: workers() == expected, "the operator's worker Deployments", 60, log_path)
        for role in ROLES:
            owner = apps.read_namespaced_deployment(f"{POOL}-{role}", namespace).metadata.owner_references[0]
            assert (owner.kind, owner.name) == ("PirateWorkerPool", POOL)
        check_durable_results(apps, namespace, pool, log_path)

        # helm uninstall's pre-delete hook, run as its own ServiceAccount while the operator runs.
        hooks = render(namespace=namespace)  # the defaults, where the hook is on
        hook_job = hooks.hook("Job", "pre-delete")
        core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
        core.create_namespaced_service_account(namespace, hooks.hook("ServiceAccount", "pre-delete"))
        rbac.create_namespaced_role(namespace, hooks.hook("Role", "pre-delete"))
        rbac.create_namespaced_role_binding(namespace, hooks.hook("RoleBinding", "pre-delete"))
        hook_config = tmp_path / "hook-kubeconfig"
        hook_account = hook_job["spec"]["template"]["spec"]["serviceAccountName"]
        hook_config.write_text(service_account_kubeconfig(kube, kubeconfig, namespace, hook_account))
        (container,) = hook_job["spec"]["template"]["spec"]["containers"]
        hook = subprocess.run(
            [sys.executable, "-c", container["command"][2]],
            env={
                **os.environ,
                **{e["name"]: e["value"] for e in container["env"]},
                "KUBECONFIG": str(hook_config),
            },
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert hook.returncode == 0, hook.stderr + log_path.read_text()[-3000:]
        assert f"pool {namespace}/{POOL} is gone" in hook.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        release_leftover_pool(custom, namespace)

    config.uninstall(RELEASE, timeout=120)
    # The garbage collector follows the workers' ownerReferences to the deleted pool.
    eventually(lambda: workers() == [], "the worker Deployments to be garbage-collected", 150)

    forbidden = [line for line in log_path.read_text().splitlines() if "forbidden" in line.lower()]
    unexpected = [line[:300] for line in forbidden if not OPTIONAL_SCANNING.search(line)]
    assert unexpected == [], "the operator was denied something it needs"
