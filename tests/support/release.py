"""The chart installed on the real node with the images of ``make images``: what the cluster tier
drives it with (one-shot pods of the worker image, ``redis-cli`` in the Redis pod, the claims' data
on the node's disk).

Every wait polls with a deadline. Nothing here talks to a pod over the network from the host:
commands run inside pods (``kubectl exec``, pods of our own), as a user's would.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python

from tests.support.cluster import Cluster, describe_pods
from tests.support.images import IMAGES
from tests.support.kube import poll

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pirate-workers"
RELEASE = "pw"
FULLNAME = f"{RELEASE}-pirate-workers"
POOL = FULLNAME
OPERATOR = f"{FULLNAME}-operator"
REDIS = f"{FULLNAME}-redis"
POSTGRESQL = f"{FULLNAME}-postgresql"
REDIS_AUTH = f"{FULLNAME}-redis-auth"
POSTGRESQL_AUTH = f"{FULLNAME}-postgresql-auth"
OUTPUTS = f"{FULLNAME}-outputs"
ROLES = ("llm", "reconciler", "recorder")
WORKER_UID = 10001


def image(role: str) -> dict[str, str]:
    repository, tag = IMAGES[role].split(":")
    return {"repository": repository, "tag": tag}


def node_values(**pool: Any) -> dict[str, Any]:
    """The chart's defaults, on the images of ``make images`` (present on the node: never pulled)."""
    return {
        "operator": {"image": {**image("operator"), "pullPolicy": "Never"}},
        "redis": {"bundled": {"image": {**image("redis"), "pullPolicy": "Never"}}},
        "database": {"bundled": {"image": {**image("postgres"), "pullPolicy": "Never"}}},
        "pool": {"image": image("worker"), **pool},
    }


@dataclass
class Release:
    """One ``helm install`` of the chart in its own namespace of the node."""

    cluster: Cluster
    namespace: str
    helm: helm_python.Config
    values: dict[str, Any] = field(default_factory=dict)

    def upgrade(self, values: dict[str, Any]) -> None:
        """``helm upgrade`` to ``values`` (they become the release's values), waiting for readiness."""
        result = self.helm.upgrade(
            CHART, RELEASE, values, namespace=self.namespace, timeout=300, wait="watcher"
        )
        assert result["status"] == "deployed", result
        self.values = values

    # --- objects ------------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.cluster.get(kind, name, self.namespace)

    def pool(self) -> dict[str, Any]:
        found = self.get("pirateworkerpool", POOL)
        assert found is not None, "the default pool is gone"
        return found

    def condition(self, kind: str) -> dict[str, Any] | None:
        conditions = self.pool().get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    def replicas(self, role: str) -> int:
        deployment = self.get("deployment", f"{POOL}-{role}")
        return int((deployment or {}).get("spec", {}).get("replicas") or 0)

    def role_pods(self, role: str) -> list[dict[str, Any]]:
        return self.cluster.pods(
            self.namespace, f"app.kubernetes.io/component={role},pirateradio.dev/pool={POOL}"
        )

    def secret(self, name: str, key: str) -> str:
        found = self.get("secret", name)
        assert found is not None, f"Secret {name} is missing"
        return base64.b64decode(found["data"][key]).decode()

    def events(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(
            self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout
        )["items"]
        return items

    def logs(self, pod: str, container: str | None = None) -> str:
        args = ["logs", "-n", self.namespace, pod] + (["-c", container] if container else [])
        return self.cluster.kubectl(*args, check=False).stdout

    def claim_dir(self, claim: str) -> Path:
        """Where the hostpath provisioner keeps a claim's data on this machine (the node)."""
        found = self.get("persistentvolumeclaim", claim)
        assert found is not None and found["spec"].get("volumeName"), f"claim {claim} is not bound"
        volume = self.cluster.get("persistentvolume", found["spec"]["volumeName"])
        assert volume is not None
        return Path(volume["spec"]["hostPath"]["path"])

    # --- commands ------------------------------------------------------------------------------
    def exec(self, target: str, *command: str, check: bool = True, timeout: float = 60) -> str:
        """``kubectl exec TARGET -- COMMAND`` (TARGET e.g. ``statefulset/<name>``); its stdout."""
        result = self.cluster.kubectl(
            "exec", "-n", self.namespace, target, "--", *command, timeout=timeout, check=check
        )
        return result.stdout + (result.stderr if not check else "")

    def redis_cli(self, *args: str) -> str:
        """``redis-cli`` in the Redis pod, authenticated by its own REDISCLI_AUTH."""
        return self.exec(f"statefulset/{REDIS}", "redis-cli", "--no-raw", *args).strip()

    def run(
        self,
        args: list[str],
        *,
        command: list[str] | None = None,
        image_role: str = "worker",
        env: dict[str, Any] | None = None,
        volumes: list[dict[str, Any]] | None = None,
        mounts: list[dict[str, Any]] | None = None,
        expect: str = "Succeeded",
        timeout: float = 120,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Run one pod of an image of ``make images`` to completion, locked down like the chart's;
        returns its log. ``env`` values are strings or ``(secret, key)`` references."""
        name = f"run-{uuid.uuid4().hex[:8]}"
        variables = [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": value[0], "key": value[1]}}}
            if isinstance(value, tuple)
            else {"name": key, "value": value}
            for key, value in (env or {}).items()
        ]
        container: dict[str, Any] = {
            "name": "main",
            "image": IMAGES[image_role],
            "imagePullPolicy": "Never",
            "args": args,
            "env": variables,
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])],
        }
        if command is not None:
            container["command"] = command
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "pirate-test-run"}},
            "spec": {
                "restartPolicy": "Never",
                "enableServiceLinks": False,
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID},
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}, *(volumes or [])],
            },
        }
        self.cluster.apply(body, namespace=self.namespace)
        try:
            self.cluster.wait_for_pod_phase(self.namespace, name, expect, timeout=timeout)
            return self.logs(name)
        finally:
            self.cluster.kubectl("delete", "pod", "-n", self.namespace, name, "--wait=false", check=False)

    def python(self, code: str, **env: Any) -> str:
        """``python -c CODE`` in the worker image, with REDIS_URL of the bundled Redis."""
        return self.run([], command=["python", "-c", code], env={"REDIS_URL": (REDIS_AUTH, "url"), **env})

    def db_stats(self) -> dict[str, Any]:
        """``pirate-workers db stats --json`` against the pool's database, from a pod."""
        output = self.run(["db", "stats", "--json"], env={"DATABASE_URL": (POSTGRESQL_AUTH, "url")})
        stats: dict[str, Any] = json.loads(output[output.index("{") :])
        return stats

    # --- RQ, read in Redis ------------------------------------------------------------------------
    def count(self, registry: str, queue: str) -> int:
        """Jobs in one of RQ's registries (``finished``, ``failed``, ``wip``, ``scheduled``) of a queue."""
        return int(self.redis_cli("ZCARD", f"rq:{registry}:{queue}").split()[-1])

    def queued(self, queue: str) -> int:
        return int(self.redis_cli("LLEN", f"rq:queue:{queue}").split()[-1])

    def job_status(self, job_id: str) -> str:
        return self.redis_cli("HGET", f"rq:job:{job_id}", "status").strip().strip('"')

    def wait_for_roles(self, predicate: Any, what: str, timeout: float = 120) -> dict[str, int]:
        """Poll the roles' replicas until ``predicate(replicas)``; on timeout, show the pods."""
        seen: dict[str, int] = {}

        def check() -> dict[str, int]:
            nonlocal seen
            seen = {role: self.replicas(role) for role in ROLES}
            return seen if predicate(seen) else {}

        try:
            return poll(check, timeout, what, interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe_pods(self.cluster.pods(self.namespace))}") from None


def install(cluster: Cluster, namespace: str, values: dict[str, Any], timeout: int = 300) -> Release:
    """``helm install`` (helm-python-sdk) and wait for the operator, Redis and PostgreSQL to be ready."""
    config = helm_python.Config(kubeconfig_path=cluster.kubeconfig, namespace=namespace)
    started = time.monotonic()
    release = config.install(CHART, RELEASE, values, namespace=namespace, timeout=timeout, wait="watcher")
    assert release["status"] == "deployed", release
    handle = Release(cluster, namespace, config, values)
    for component in ("operator", "redis", "postgresql"):
        cluster.wait_for_pods_ready(
            namespace,
            f"app.kubernetes.io/component={component}",
            timeout=max(30.0, timeout - (time.monotonic() - started)),
        )
    return handle
