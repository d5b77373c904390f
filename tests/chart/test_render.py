"""What the chart renders for a matrix of values: objects, their security settings and wiring.

Offline renders through the Helm SDK (no cluster). Renders that must fail are in
test_values_failures.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.rbac import CLUSTER_EXTRA_RULES, CLUSTER_PEERING_RULE, NAMESPACED_RULES, PEERING_RULE
from tests.support.release import FULLNAME, OPERATOR, POSTGRESQL, REDIS, REDIS_AUTH

NAMESPACE = "pirates"
EXTERNAL_REDIS = {"redis": {"bundled": {"enabled": False}, "url": "redis://redis.example:6379/2"}}


def operator_container(rendered: Any) -> dict[str, Any]:
    deployment = rendered.one("Deployment")
    assert deployment["metadata"]["name"] == OPERATOR
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, f"{path}[{index}]")


# --- defaults ---------------------------------------------------------------------------------


def statefulset(rendered: Any, name: str) -> dict[str, Any]:
    (found,) = [s for s in rendered.of_kind("StatefulSet") if s["metadata"]["name"] == name]
    return found


def secret_value(rendered: Any, name: str, key: str) -> str:
    (found,) = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == name]
    return base64.b64decode(found["data"][key]).decode()


def test_defaults_render_operator_rbac_bundled_services_pool_and_test_hook(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)

    assert rendered.kinds() == [
        "Deployment",
        "NetworkPolicy",
        "NetworkPolicy",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "PirateWorkerPool",
        "Role",
        "RoleBinding",
        "Secret",
        "Secret",
        "Service",
        "Service",
        "Service",
        "ServiceAccount",
        "StatefulSet",
        "StatefulSet",
    ]
    for obj in rendered.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "pw"
        assert labels["app.kubernetes.io/part-of"] == "pirate-workers"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert sorted((h["kind"], h["metadata"]["annotations"]["helm.sh/hook"]) for h in rendered.hooks) == [
        ("Job", "pre-delete"),
        ("Pod", "test"),
        ("Role", "pre-delete"),
        ("RoleBinding", "pre-delete"),
        ("ServiceAccount", "pre-delete"),
    ]


def test_operator_deployment_is_one_recreated_replica_with_liveness_on_healthz(render: Any) -> None:
    deployment = render().one("Deployment")
    spec = deployment["spec"]

    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    container = operator_container(render())
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["image"] == "ghcr.io/example/pirate-operator:0.1.0"
    assert container["args"] == ["operator"]
    assert "command" not in container, "the image's exec-form ENTRYPOINT must stay PID 1"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_operator_runs_non_root_read_only_without_capabilities(render: Any) -> None:
    pod = render().one("Deployment")["spec"]["template"]["spec"]
    container = operator_container(render())

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["serviceAccountName"] == OPERATOR


def test_operator_environment_follows_the_process_contract(render: Any) -> None:
    env = env_of(operator_container(render(namespace=NAMESPACE)))

    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["OPERATOR_NAMESPACES"] == NAMESPACE
    assert env["OPERATOR_HTTP_PORT"] == "8080"
    assert env["LOG_LEVEL"] == "INFO"
    assert "OPERATOR_PEERING" not in env, "standalone by default"


def test_default_role_grants_exactly_the_contract_rules(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    role = rendered.one("Role")
    binding = rendered.one("RoleBinding")

    assert role["rules"] == NAMESPACED_RULES
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert not rendered.of_kind("ClusterRole")


def test_chart_never_renders_worker_deployments_or_replica_counts_of_scaled_objects(render: Any) -> None:
    """The trap: Helm-rendered replicas on something the operator scales reset it on every upgrade."""
    for values in ({}, {"pool": {"roles": {"custom": {"queues": ["default"], "maxReplicas": 3}}}}):
        rendered = render(values)
        assert [d["metadata"]["name"] for d in rendered.of_kind("Deployment")] == [OPERATOR]
        pool = rendered.one("PirateWorkerPool")
        assert not [path for path, _ in walk(pool) if path.endswith(".replicas")]


def test_default_pool_points_at_bundled_redis_with_offline_provider(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    pool = rendered.one("PirateWorkerPool")
    spec = pool["spec"]

    assert pool["apiVersion"] == "pirateradio.dev/v1alpha1"
    assert pool["metadata"]["name"] == FULLNAME
    assert spec["image"] == "ghcr.io/example/pirate-worker:0.1.0"
    assert spec["redis"] == {"urlSecretRef": {"name": REDIS_AUTH, "key": "url"}}
    assert spec["provider"] == {"name": "rules"}
    assert spec["roles"]["llm"] == {
        "minReplicas": 0,
        "maxReplicas": 10,
        "workersPerPod": 2,
        "callsPerWorker": 8,
    }
    assert set(spec["roles"]) == {"llm", "reconciler", "recorder"}
    assert spec["paused"] is False
    assert spec["dryRun"] is False
    service = next(s for s in rendered.of_kind("Service") if s["metadata"]["name"] == REDIS)
    assert service["spec"]["ports"][0]["port"] == 6379


@pytest.mark.parametrize(
    "values",
    [
        {},
        EXTERNAL_REDIS,
        {"provider": {"name": "openai", "baseUrl": "http://llm.local:8000/v1", "model": "m"}},
        {"provider": {"name": "anthropic", "existingSecret": {"name": "llm-keys", "key": "anthropic"}}},
    ],
    ids=["defaults", "external-redis", "openai-compatible", "existing-key"],
)
def test_pool_renders_no_empty_strings(render: Any, values: dict[str, Any]) -> None:
    """The apiserver rejects "" in the CRD's minLength string fields: unset values are omitted."""
    pool = render(values).one("PirateWorkerPool")
    assert not [path for path, value in walk(pool["spec"]) if value == "" or value is None]


def test_bundled_redis_is_a_non_root_single_statefulset_with_aof_on_a_volume(render: Any) -> None:
    spec = statefulset(render(), REDIS)["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]

    assert spec["replicas"] == 1
    assert container["command"][:5] == ["redis-server", "--dir", "/data", "--appendonly", "yes"]
    assert "noeviction" in container["command"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 999
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "volumes" not in pod


def test_bundled_redis_without_persistence_uses_emptydir_and_warns(render: Any) -> None:
    rendered = render({"redis": {"bundled": {"persistence": {"enabled": False}}}})
    spec = statefulset(rendered, REDIS)["spec"]

    assert "volumeClaimTemplates" not in spec
    assert spec["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert "--appendonly" in (command := spec["template"]["spec"]["containers"][0]["command"])
    assert command[command.index("--appendonly") + 1] == "no"
    assert "no persistence" in rendered.notes


# --- Redis sources ----------------------------------------------------------------------------


def test_external_redis_url_renders_no_redis_and_points_the_pool_at_it(render: Any) -> None:
    rendered = render(EXTERNAL_REDIS)

    assert [s["metadata"]["name"] for s in rendered.of_kind("StatefulSet")] == [POSTGRESQL]
    assert REDIS not in [s["metadata"]["name"] for s in rendered.of_kind("Service")]
    assert REDIS_AUTH not in [s["metadata"]["name"] for s in rendered.of_kind("Secret")]
    assert REDIS not in [p["metadata"]["name"] for p in rendered.of_kind("NetworkPolicy")]
    assert rendered.one("PirateWorkerPool")["spec"]["redis"] == {"url": "redis://redis.example:6379/2"}
    assert "Redis needs its password" not in rendered.notes


def test_redis_url_from_an_existing_secret(render: Any) -> None:
    values = {
        "redis": {"bundled": {"enabled": False}, "existingSecret": {"name": "redis-auth", "key": "url"}}
    }
    spec = render(values).one("PirateWorkerPool")["spec"]

    assert spec["redis"] == {"urlSecretRef": {"name": "redis-auth", "key": "url"}}


# --- provider keys ----------------------------------------------------------------------------


def test_existing_provider_secret_is_referenced_and_no_secret_is_created(render: Any) -> None:
    values = {"provider": {"name": "anthropic", "existingSecret": {"name": "llm-keys", "key": "anthropic"}}}
    rendered = render(values)

    assert f"{FULLNAME}-provider" not in [s["metadata"]["name"] for s in rendered.of_kind("Secret")]
    assert rendered.one("PirateWorkerPool")["spec"]["provider"] == {
        "name": "anthropic",
        "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"},
    }


def test_api_key_value_goes_into_the_chart_secret_and_nowhere_else(render: Any) -> None:
    key = "sk-ant-canary-0123456789"
    rendered = render({"provider": {"name": "claude", "apiKey": key, "model": "claude-x"}})
    (secret,) = [s for s in rendered.of_kind("Secret") if s["metadata"]["name"] == f"{FULLNAME}-provider"]

    assert secret["metadata"]["name"] == f"{FULLNAME}-provider"
    assert base64.b64decode(secret["data"]["api-key"]).decode() == key
    assert rendered.one("PirateWorkerPool")["spec"]["provider"] == {
        "name": "claude",
        "model": "claude-x",
        "apiKeySecretRef": {"name": f"{FULLNAME}-provider", "key": "api-key"},
    }
    encoded = base64.b64encode(key.encode()).decode()
    leaks = [
        path
        for path, text in rendered.templates.items()
        if (key in text or encoded in text) and not path.endswith("pool/secret.yaml")
    ]
    assert leaks == []
    assert "release history" in rendered.notes


# --- RBAC modes -------------------------------------------------------------------------------


def test_cluster_wide_rbac_uses_a_cluster_role_and_all_namespaces(render: Any) -> None:
    rendered = render({"rbac": {"clusterWide": True}}, namespace=NAMESPACE)

    assert not rendered.of_kind("Role")
    assert not rendered.of_kind("RoleBinding")
    role = rendered.one("ClusterRole")
    binding = rendered.one("ClusterRoleBinding")
    assert role["metadata"]["name"] == f"{OPERATOR}-{NAMESPACE}"
    assert "namespace" not in role["metadata"]
    assert role["rules"] == NAMESPACED_RULES + CLUSTER_EXTRA_RULES
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    container = operator_container(rendered)
    assert container["args"] == ["operator", "--all-namespaces"]
    assert "OPERATOR_NAMESPACES" not in env_of(container)
    assert "EVERY namespace" in rendered.notes


def test_watch_namespaces_get_one_role_and_binding_each(render: Any) -> None:
    rendered = render({"operator": {"watchNamespaces": ["team-a", "team-b"]}}, namespace=NAMESPACE)

    assert sorted(r["metadata"]["namespace"] for r in rendered.of_kind("Role")) == ["team-a", "team-b"]
    bindings = rendered.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == NAMESPACE for b in bindings)
    assert env_of(operator_container(rendered))["OPERATOR_NAMESPACES"] == "team-a,team-b"


def test_peering_sets_the_env_and_grants_kopf_peerings(render: Any) -> None:
    rendered = render({"operator": {"peering": {"enabled": True, "name": "pirates"}}})
    assert env_of(operator_container(rendered))["OPERATOR_PEERING"] == "pirates"
    assert rendered.one("Role")["rules"] == [*NAMESPACED_RULES, PEERING_RULE]

    cluster = render({"operator": {"peering": {"enabled": True}}, "rbac": {"clusterWide": True}})
    assert cluster.one("ClusterRole")["rules"] == [
        *NAMESPACED_RULES,
        PEERING_RULE,
        *CLUSTER_EXTRA_RULES,
        CLUSTER_PEERING_RULE,
    ]


def test_rbac_create_false_renders_no_rbac_and_warns(render: Any) -> None:
    rendered = render({"rbac": {"create": False}, "pool": {"uninstallCleanup": {"enabled": False}}})
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(rendered.kinds())
    assert "rbac.create=false" in rendered.notes


def test_existing_service_account(render: Any) -> None:
    rendered = render({"serviceAccount": {"create": False, "name": "ops"}})
    assert not rendered.of_kind("ServiceAccount")
    assert rendered.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops"
    assert rendered.one("RoleBinding")["subjects"][0]["name"] == "ops"


# --- pool -------------------------------------------------------------------------------------


def test_no_default_pool(render: Any) -> None:
    values = {
        "pool": {"enabled": False},
        "redis": {"bundled": {"enabled": False}},
        "database": {"bundled": {"enabled": False}},
    }
    rendered = render(values)

    assert not rendered.of_kind("PirateWorkerPool")
    assert not rendered.of_kind("StatefulSet")
    assert not rendered.of_kind("PersistentVolumeClaim")
    assert not rendered.of_kind("Secret")
    assert rendered.of_kind("Deployment")
    assert "No default pool" in rendered.notes


def test_pool_values_reach_the_spec(render: Any) -> None:
    values = {
        "pool": {
            "name": "pantry",
            "image": {"repository": "registry.local/pirate-worker", "tag": "1.2.3"},
            "pollingIntervalSeconds": 5,
            "roles": {
                "recorder": None,
                "custom": {
                    "queues": ["default", "high"],
                    "maxReplicas": 3,
                    "env": [{"name": "A", "value": "b"}],
                },
            },
            "quota": {"replicasWhenBlocked": 1, "probeReplicas": 2},
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            "paused": True,
            "dryRun": True,
        }
    }
    rendered = render(values)
    pool = rendered.one("PirateWorkerPool")
    spec = pool["spec"]

    assert pool["metadata"]["name"] == "pantry"
    assert spec["image"] == "registry.local/pirate-worker:1.2.3"
    assert spec["pollingIntervalSeconds"] == 5
    assert set(spec["roles"]) == {"llm", "reconciler", "custom"}, "null removes a default role"
    assert spec["roles"]["custom"] == {
        "queues": ["default", "high"],
        "maxReplicas": 3,
        "env": [{"name": "A", "value": "b"}],
    }
    assert spec["quota"] == {"replicasWhenBlocked": 1, "probeReplicas": 2}
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 60}}
    assert spec["paused"] is True
    assert spec["dryRun"] is True
    assert "pool.dryRun=true" in rendered.notes
    assert "pool.paused=true" in rendered.notes


@pytest.mark.parametrize("seconds", [None, 0, 45])
def test_pod_start_seconds_reaches_the_spec_only_when_set(render: Any, seconds: int | None) -> None:
    spec = render({"pool": {"podStartSeconds": seconds}}).one("PirateWorkerPool")["spec"]

    if seconds is None:
        assert "podStartSeconds" not in spec, "unset: the CRD's default applies"
    else:
        assert spec["podStartSeconds"] == seconds


def test_image_digest_pins_both_images(render: Any) -> None:
    digest = "sha256:" + "a" * 64
    rendered = render(
        {"operator": {"image": {"digest": digest}}, "pool": {"image": {"tag": "v9", "digest": digest}}}
    )

    assert operator_container(rendered)["image"] == f"ghcr.io/example/pirate-operator:0.1.0@{digest}"
    assert rendered.one("PirateWorkerPool")["spec"]["image"] == f"ghcr.io/example/pirate-worker:v9@{digest}"


# --- metrics and helm test --------------------------------------------------------------------


def test_metrics_service_and_optional_service_monitor(render: Any) -> None:
    default = render()
    service = next(s for s in default.of_kind("Service") if s["metadata"]["name"] == f"{OPERATOR}-metrics")
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    assert not default.of_kind("ServiceMonitor")

    monitored = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}})
    monitor = monitored.one("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "http-metrics"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_helm_test_hook_checks_operator_healthz_with_the_operator_image(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    pod = rendered.hook("Pod", "test")

    (container,) = pod["spec"]["containers"]
    assert container["image"] == operator_container(rendered)["image"]
    assert f"http://{OPERATOR}-metrics.{NAMESPACE}.svc:8080/healthz" in container["command"][-1]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["restartPolicy"] == "Never"

    assert not [h for h in render({"helmTest": {"enabled": False}}).hooks if h["kind"] == "Pod"]


def test_uninstall_hook_deletes_only_the_default_pool_before_the_operator_goes(render: Any) -> None:
    """The operator's finalizer would strand the pool if Helm deleted the operator first."""
    rendered = render(namespace=NAMESPACE)
    job = rendered.hook("Job", "pre-delete")
    role = rendered.hook("Role", "pre-delete")
    binding = rendered.hook("RoleBinding", "pre-delete")
    account = rendered.hook("ServiceAccount", "pre-delete")

    def weight(obj: dict[str, Any]) -> int:
        return int(obj["metadata"]["annotations"]["helm.sh/hook-weight"])

    assert weight(account) < weight(binding) < weight(job)
    assert weight(role) < weight(binding)
    assert role["rules"] == [
        {
            "apiGroups": ["pirateradio.dev"],
            "resources": ["pirateworkerpools"],
            "resourceNames": [FULLNAME],
            "verbs": ["get", "delete"],
        }
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert container["image"] == operator_container(rendered)["image"]
    assert env_of(container) == {"POOL_NAME": FULLNAME, "POOL_NAMESPACE": NAMESPACE, "TIMEOUT_SECONDS": "120"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert job["spec"]["activeDeadlineSeconds"] > 120

    assert not [h for h in render({"pool": {"enabled": False}}).hooks if h["kind"] == "Job"]
    disabled = render({"pool": {"uninstallCleanup": {"enabled": False}}})
    assert not [h for h in disabled.hooks if h["kind"] == "Job"]


def test_notes_explain_crd_upgrades(render: Any) -> None:
    notes = render().notes
    assert "kubectl apply -f manifests/crd.yaml" in notes
    assert "pirate-workers crd | kubectl apply -f -" in notes
