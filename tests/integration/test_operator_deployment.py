"""The pure Deployment / Event / deletion-cost builders of ``pirate_operator.kube`` (no I/O).

They sit next to the integration tests that exercise the same objects against real services; the
e2e tier creates the built Deployment on a real apiserver as well.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pirate_operator.api import PirateWorkerPool, effective_roles, parse_pool
from pirate_operator.kube import (
    DeploymentView,
    EventType,
    build_deployment,
    build_event,
    creation_body,
    deletion_cost_patches,
    deployment_view,
    update_patch,
)
from pirate_operator.kube.names import POD_DELETION_COST_ANNOTATION, SPEC_HASH_ANNOTATION


def _pool(**spec: Any) -> PirateWorkerPool:
    body = {
        "apiVersion": "pirateradio.dev/v1alpha1",
        "kind": "PirateWorkerPool",
        "metadata": {"name": "pantry", "namespace": "food", "uid": "uid-1", "generation": 1},
        "spec": {
            "image": "ghcr.io/example/pirate-worker:0.1.0",
            "redis": {"url": "redis://redis:6379/0"},
            "provider": {
                "name": "anthropic",
                "model": "claude-sonnet-4-20250514",
                "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"},
            },
            **spec,
        },
    }
    return parse_pool(body)


def _deployment(pool: PirateWorkerPool, role: str) -> dict[str, Any]:
    return build_deployment(pool, effective_roles(pool.spec)[role])


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in container["env"]}


def test_llm_deployment_runs_the_worker_command_with_its_settings() -> None:
    pool = _pool()
    body = _deployment(pool, "llm")
    assert body["metadata"]["name"] == "pantry-llm"
    assert body["metadata"]["namespace"] == "food"
    assert "replicas" not in body["spec"]
    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/example/pirate-worker:0.1.0"
    assert container["command"] == ["pirate-workers", "worker", "--role", "llm", "--count", "2"]
    env = _env(body)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["LLM_PROVIDER"] == "anthropic"
    assert env["LLM_MODEL_NAME"] == "claude-sonnet-4-20250514"
    assert env["ANTHROPIC_API_KEY"] == {"secretKeyRef": {"name": "llm-keys", "key": "anthropic"}}
    assert env["WORKER_COUNT"] == "2"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert pod["terminationGracePeriodSeconds"] == 630


@pytest.mark.parametrize(
    ("roles", "role", "want"),
    [
        ({"llm": {}}, "llm", "1"),
        ({"llm": {"callsPerWorker": 8}}, "llm", "8"),
        ({"batch": {"queues": ["high", "llm"], "callsPerWorker": 4}}, "batch", "4"),
        ({"reconciler": {}}, "reconciler", None),
    ],
)
def test_llm_concurrency_is_the_roles_calls_per_worker(
    roles: dict[str, Any], role: str, want: str | None
) -> None:
    """Set on every role that consumes the llm queue (even at 1), absent elsewhere."""
    env = _env(_deployment(_pool(roles=roles), role))
    assert env.get("LLM_CONCURRENCY") == want


def test_labels_selector_and_owner_reference() -> None:
    body = _deployment(_pool(), "reconciler")
    labels = {
        "app.kubernetes.io/name": "pirate-worker",
        "app.kubernetes.io/instance": "pantry",
        "app.kubernetes.io/component": "reconciler",
        "app.kubernetes.io/managed-by": "pirate-workers",
        "pirateradio.dev/pool": "pantry",
    }
    assert body["metadata"]["labels"] == labels
    assert body["spec"]["template"]["metadata"]["labels"] == labels
    selector = body["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "pirateradio.dev/v1alpha1",
            "kind": "PirateWorkerPool",
            "name": "pantry",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_pods_run_non_root_with_a_read_only_root_and_writable_scratch_dirs() -> None:
    pod = _deployment(_pool(), "recorder")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts["/tmp"]] == {"name": "tmp", "emptyDir": {}}
    output_dir = _env({"spec": {"template": {"spec": pod}}})["OUTPUT_DIR"]
    assert any(output_dir.startswith(path) for path in mounts if path != "/tmp")
    assert container["workingDir"] in mounts
    assert pod["automountServiceAccountToken"] is False


def test_only_provider_callers_get_the_api_key() -> None:
    pool = _pool()
    assert "ANTHROPIC_API_KEY" not in _env(_deployment(pool, "reconciler"))
    assert "ANTHROPIC_API_KEY" not in _env(_deployment(pool, "recorder"))


def test_custom_role_names_its_queues_and_its_env_overrides_the_operators() -> None:
    pool = _pool(
        roles={
            "batch": {
                "queues": ["default", "high"],
                "jobTimeoutSeconds": 100,
                "env": [
                    {"name": "WORKER_COUNT", "value": "1"},
                    {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                ],
                "resources": {"requests": {"cpu": "1"}},
            }
        }
    )
    body = _deployment(pool, "batch")
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["--queues", "default,high"]
    assert container["resources"] == {"requests": {"cpu": "1"}}
    names = [var["name"] for var in container["env"]]
    assert names.count("WORKER_COUNT") == 1
    env = _env(body)
    assert env["WORKER_COUNT"] == "1"
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "db", "key": "url"}}
    assert body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 130


DATABASE_SECRET = {"urlSecretRef": {"name": "hsds-db", "key": "url"}}
OUTPUTS = {"persistentVolumeClaim": {"claimName": "pirate-outputs"}}


def _mounts(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path -> the volume mounted there."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    return {mount["mountPath"]: volumes[mount["name"]] for mount in pod["containers"][0]["volumeMounts"]}


def test_database_url_reaches_only_the_reconciler_and_by_reference() -> None:
    pool = _pool(database=DATABASE_SECRET, outputs=OUTPUTS)
    reference = {"secretKeyRef": {"name": "hsds-db", "key": "url"}}
    assert _env(_deployment(pool, "reconciler"))["DATABASE_URL"] == reference
    assert "DATABASE_URL" not in _env(_deployment(pool, "llm"))
    assert "DATABASE_URL" not in _env(_deployment(pool, "recorder"))
    plain = _pool(database={"url": "postgresql://pirate@db/hsds"})
    assert _env(_deployment(plain, "reconciler"))["DATABASE_URL"] == "postgresql://pirate@db/hsds"


def test_a_custom_role_on_the_reconciler_queue_gets_the_database_and_its_own_env_wins() -> None:
    roles = {"hsds": {"queues": ["reconciler"]}, "other": {"queues": ["default"]}}
    pool = _pool(database=DATABASE_SECRET, roles=roles)
    assert _env(_deployment(pool, "hsds"))["DATABASE_URL"] == {
        "secretKeyRef": {"name": "hsds-db", "key": "url"}
    }
    assert "DATABASE_URL" not in _env(_deployment(pool, "other"))
    own = {**roles["hsds"], "env": [{"name": "DATABASE_URL", "value": "sqlite:////data/x.db"}]}
    pool = _pool(database=DATABASE_SECRET, roles={"hsds": own})
    assert _env(_deployment(pool, "hsds"))["DATABASE_URL"] == "sqlite:////data/x.db"


def test_recorder_mounts_the_claim_at_output_dir_and_stays_on_one_node() -> None:
    pool = _pool(database=DATABASE_SECRET, outputs=OUTPUTS)
    recorder = _deployment(pool, "recorder")
    output_dir = _env(recorder)["OUTPUT_DIR"]
    assert _mounts(recorder)[output_dir]["persistentVolumeClaim"] == {"claimName": "pirate-outputs"}
    template = recorder["spec"]["template"]
    (term,) = template["spec"]["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selected = term["labelSelector"]["matchLabels"]
    assert selected.items() <= template["metadata"]["labels"].items(), "the first pod must match its own term"
    assert recorder["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    for role in ("llm", "reconciler"):
        other = _deployment(pool, role)
        assert output_dir not in _mounts(other)
        assert "affinity" not in other["spec"]["template"]["spec"]
        assert not selected.items() <= other["spec"]["template"]["metadata"]["labels"].items()


def test_sqlite_on_the_claim_mounts_it_in_the_reconciler_too() -> None:
    pool = _pool(database={"url": "sqlite:////var/lib/pirate-workers/outputs/hsds.db"}, outputs=OUTPUTS)
    reconciler = _deployment(pool, "reconciler")
    assert _mounts(reconciler)["/var/lib/pirate-workers/outputs"]["persistentVolumeClaim"]["claimName"] == (
        "pirate-outputs"
    )
    assert "podAffinity" in reconciler["spec"]["template"]["spec"]["affinity"]


def test_readwritemany_claims_can_spread() -> None:
    pool = _pool(outputs={**OUTPUTS, "keepOnOneNode": False})
    recorder = _deployment(pool, "recorder")
    assert "/var/lib/pirate-workers/outputs" in _mounts(recorder)
    assert "affinity" not in recorder["spec"]["template"]["spec"]


def test_without_outputs_the_recorder_writes_to_its_emptydir() -> None:
    recorder = _deployment(_pool(), "recorder")
    assert all("persistentVolumeClaim" not in volume for volume in _mounts(recorder).values())


def test_redis_url_from_a_secret_and_openai_base_url() -> None:
    pool = _pool(
        redis={"urlSecretRef": {"name": "redis", "key": "url"}},
        provider={"name": "openai", "baseUrl": "https://openrouter.ai/api/v1"},
    )
    env = _env(_deployment(pool, "llm"))
    assert env["REDIS_URL"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    assert env["OPENAI_BASE_URL"] == "https://openrouter.ai/api/v1"
    assert "OPENAI_API_KEY" not in env


def test_anthropic_base_url_reaches_the_worker() -> None:
    provider = {
        "name": "claude",
        "baseUrl": "https://llm-proxy.internal",
        "apiKeySecretRef": {"name": "k", "key": "a"},
    }
    pool = _pool(provider=provider)
    assert _env(_deployment(pool, "llm"))["ANTHROPIC_BASE_URL"] == "https://llm-proxy.internal"


def test_spec_hash_follows_the_spec_and_nothing_else() -> None:
    first = _deployment(_pool(), "llm")
    again = _deployment(_pool(), "llm")
    changed = _deployment(_pool(image="ghcr.io/example/pirate-worker:0.2.0"), "llm")
    other_limits = _deployment(_pool(roles={"llm": {"maxReplicas": 3}}), "llm")
    digest = first["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert again["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == digest
    assert changed["metadata"]["annotations"][SPEC_HASH_ANNOTATION] != digest
    # scaling limits do not touch the pods: no rollout
    assert other_limits["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == digest


def test_replicas_are_set_on_create_only() -> None:
    body = _deployment(_pool(), "llm")
    assert creation_body(body, 3)["spec"]["replicas"] == 3
    assert "replicas" not in body["spec"]
    patch = update_patch(body)
    assert "replicas" not in patch["spec"]
    assert "selector" not in patch["spec"]  # immutable
    assert patch["spec"]["template"] == body["spec"]["template"]


def test_deployment_view_reads_what_a_cycle_needs() -> None:
    body = creation_body(_deployment(_pool(), "llm"), 2)
    body["metadata"].update(uid="d-1", resourceVersion="42")
    body["status"] = {"readyReplicas": 1}
    view = deployment_view(body)
    assert view == DeploymentView(
        namespace="food",
        name="pantry-llm",
        uid="d-1",
        resource_version="42",
        pool="pantry",
        role="llm",
        replicas=2,
        ready_replicas=1,
        spec_hash=body["metadata"]["annotations"][SPEC_HASH_ANNOTATION],
        owner_uid="uid-1",
    )
    assert view.newer_than("41")
    assert view.newer_than("42")
    assert not view.newer_than("43")


def _pod(name: str, cost: str | None = None, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if cost is not None:
        metadata["annotations"] = {POD_DELETION_COST_ANNOTATION: cost}
    if deleting:
        metadata["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": metadata}


def test_busy_pods_cost_more_to_delete_than_idle_ones() -> None:
    pods = [
        _pod("idle"),
        _pod("busy"),
        _pod("busier", "1000"),
        _pod("right", "0"),
        _pod("gone", deleting=True),
    ]
    patches = deletion_cost_patches(pods, {"busy": 1, "busier": 2, "gone": 1})
    assert patches == {"idle": 0, "busy": 1000, "busier": 2000}


@pytest.mark.parametrize("kind", [EventType.NORMAL, EventType.WARNING])
def test_event_refers_to_the_pool(kind: EventType) -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = build_event(
        {"name": "pantry", "namespace": "food", "uid": "uid-1"}, kind, "ScaledUp", "x" * 2000, now
    )
    assert event["involvedObject"] == {
        "apiVersion": "pirateradio.dev/v1alpha1",
        "kind": "PirateWorkerPool",
        "name": "pantry",
        "namespace": "food",
        "uid": "uid-1",
    }
    assert event["type"] == kind.value
    assert event["reason"] == "ScaledUp"
    assert len(event["message"]) == 1024
    assert event["lastTimestamp"] == "2025-01-02T03:04:05Z"
