"""Where the chart puts the results, the credentials of its bundled services, and who may reach them.

Offline renders (no cluster): every database / outputs combination, the generated credentials
(rendered into their Secret and nowhere else), and NetworkPolicies whose selectors match the pods
that really carry the labels: the operator's own Deployment builder makes the worker pods here.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from pirate_operator.api import effective_roles, parse_pool
from pirate_operator.api.results import OUTPUT_DIR, durability_problems
from pirate_operator.kube import build_deployment
from tests.chart.test_render import NAMESPACE, secret_value, statefulset
from tests.support.release import OPERATOR, POSTGRESQL, POSTGRESQL_AUTH, REDIS, REDIS_AUTH
from tests.support.release import OUTPUTS as OUTPUTS_CLAIM

KEEP = "helm.sh/resource-policy"


def pool_spec(rendered: Any) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("PirateWorkerPool")["spec"]
    return spec


def parsed_pool(rendered: Any) -> Any:
    pool = rendered.one("PirateWorkerPool")
    pool["metadata"]["uid"] = "uid-1"
    return parse_pool(pool)


def worker_pod(rendered: Any, role: str) -> dict[str, Any]:
    """The pod template the operator builds for ``role`` of the chart's default pool."""
    pool = parsed_pool(rendered)
    template: dict[str, Any] = build_deployment(pool, effective_roles(pool.spec)[role])["spec"]["template"]
    return template


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are used here"
    return bool(selector["matchLabels"].items() <= labels.items())


# --- the HSDS database ----------------------------------------------------------------------


def test_default_render_is_durable_for_the_operator(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    spec = pool_spec(rendered)
    assert spec["database"] == {"urlSecretRef": {"name": POSTGRESQL_AUTH, "key": "url"}}
    assert spec["outputs"] == {"persistentVolumeClaim": {"claimName": OUTPUTS_CLAIM}, "keepOnOneNode": True}
    assert "ephemeralResults" not in spec
    pool = parsed_pool(rendered)
    assert durability_problems(pool.spec, effective_roles(pool.spec)) == []


def test_bundled_postgresql_follows_the_official_image_interface_non_root_read_only(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    spec = statefulset(rendered, POSTGRESQL)["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}

    assert spec["replicas"] == 1
    assert "command" not in container and "args" not in container, "the image's entrypoint initializes"
    assert env["POSTGRES_USER"] == "pirate"
    assert env["POSTGRES_DB"] == "hsds"
    data = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data")
    assert env["PGDATA"].startswith(data + "/"), "PGDATA is created by postgres below the mount point"
    password_file = env["POSTGRES_PASSWORD_FILE"]
    auth_mount = next(m for m in container["volumeMounts"] if password_file.startswith(m["mountPath"] + "/"))
    auth = next(v for v in pod["volumes"] if v["name"] == auth_mount["name"])
    assert auth["secret"]["secretName"] == POSTGRESQL_AUTH
    assert auth_mount["readOnly"] is True
    assert "POSTGRES_PASSWORD" not in env, "the password is a file, not an environment variable"
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/run/postgresql", "/tmp"} <= writable
    assert pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["fsGroup"] == 999
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch", "PGDATA must stay 0700"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "pg_isready" in container["readinessProbe"]["exec"]["command"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    service = next(s for s in rendered.of_kind("Service") if s["metadata"]["name"] == POSTGRESQL)
    assert service["spec"]["ports"][0]["port"] == 5432


def test_database_url_secret_points_at_the_bundled_service(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    password = secret_value(rendered, POSTGRESQL_AUTH, "password")
    assert len(password) >= 32
    assert secret_value(rendered, POSTGRESQL_AUTH, "url") == (
        f"postgresql://pirate:{password}@{POSTGRESQL}:5432/hsds"
    )


DATABASE_SOURCES = [
    (
        {"database": {"bundled": {"enabled": False}, "existingSecret": {"name": "db", "key": "url"}}},
        {"urlSecretRef": {"name": "db", "key": "url"}},
    ),
    (
        {"database": {"bundled": {"enabled": False}, "url": "postgresql://pirate@db.example/hsds"}},
        {"url": "postgresql://pirate@db.example/hsds"},
    ),
    (
        {"database": {"bundled": {"auth": {"existingSecret": "my-pg"}}}},
        {"urlSecretRef": {"name": "my-pg", "key": "url"}},
    ),
]


@pytest.mark.parametrize(
    ("values", "expected"), DATABASE_SOURCES, ids=["secret", "url", "bundled-own-secret"]
)
def test_database_sources_reach_the_pool(
    render: Any, values: dict[str, Any], expected: dict[str, Any]
) -> None:
    rendered = render(values)
    assert pool_spec(rendered)["database"] == expected
    bundled = values["database"]["bundled"].get("enabled", True)
    assert (
        bool([s for s in rendered.of_kind("StatefulSet") if s["metadata"]["name"] == POSTGRESQL]) == bundled
    )
    assert POSTGRESQL_AUTH not in [s["metadata"]["name"] for s in rendered.of_kind("Secret")]


def test_own_secret_for_the_bundled_database_is_mounted_as_the_password_file(render: Any) -> None:
    rendered = render({"database": {"bundled": {"auth": {"existingSecret": "my-pg"}}}})
    pod = statefulset(rendered, POSTGRESQL)["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "auth")["secret"]["secretName"] == "my-pg"


def test_sqlite_on_the_outputs_claim_with_one_reconciler(render: Any) -> None:
    values = {
        "database": {"bundled": {"enabled": False}, "url": f"sqlite:///{OUTPUT_DIR}/hsds.db"},
        "pool": {"roles": {"reconciler": {"maxReplicas": 1}}},
    }
    rendered = render(values)
    pool = parsed_pool(rendered)
    assert durability_problems(pool.spec, effective_roles(pool.spec)) == []
    mounts = worker_pod(rendered, "reconciler")["spec"]["containers"][0]["volumeMounts"]
    assert OUTPUT_DIR in [m["mountPath"] for m in mounts]


def test_a_throwaway_pool_renders_without_database_or_outputs(render: Any) -> None:
    values = {
        "database": {"bundled": {"enabled": False}},
        "outputs": {"persistence": {"enabled": False}},
        "pool": {"ephemeralResults": True},
    }
    rendered = render(values)
    spec = pool_spec(rendered)
    assert "database" not in spec and "outputs" not in spec
    assert spec["ephemeralResults"] is True
    assert not rendered.of_kind("PersistentVolumeClaim")
    assert "pool.ephemeralResults=true" in rendered.notes


# --- the recorder's files -------------------------------------------------------------------


def test_outputs_claim_is_created_kept_on_uninstall_and_mounted_by_the_recorder(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == OUTPUTS_CLAIM
    assert claim["metadata"]["annotations"][KEEP] == "keep"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"], "empty: the cluster's default class"
    pod = worker_pod(rendered, "recorder")
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (mount,) = [m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == OUTPUT_DIR]
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": OUTPUTS_CLAIM}
    assert "podAffinity" in pod["spec"]["affinity"]


def test_outputs_claim_settings_and_readwritemany_spreading(render: Any) -> None:
    values = {
        "outputs": {
            "persistence": {"size": "20Gi", "storageClassName": "nfs", "accessModes": ["ReadWriteMany"]},
            "keepOnOneNode": False,
        }
    }
    rendered = render(values)
    claim = rendered.one("PersistentVolumeClaim")["spec"]
    assert (claim["storageClassName"], claim["accessModes"]) == ("nfs", ["ReadWriteMany"])
    assert claim["resources"]["requests"]["storage"] == "20Gi"
    assert pool_spec(rendered)["outputs"]["keepOnOneNode"] is False
    assert "affinity" not in worker_pod(rendered, "recorder")["spec"]


def test_existing_outputs_claim_is_used_and_none_is_created(render: Any) -> None:
    rendered = render({"outputs": {"persistence": {"existingClaim": "audit-files"}}})
    assert not rendered.of_kind("PersistentVolumeClaim")
    assert pool_spec(rendered)["outputs"]["persistentVolumeClaim"] == {"claimName": "audit-files"}


# --- generated credentials ------------------------------------------------------------------


def test_redis_requires_its_generated_password_and_the_probe_authenticates(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    password = secret_value(rendered, REDIS_AUTH, "password")
    assert len(password) >= 32
    assert secret_value(rendered, REDIS_AUTH, "url") == f"redis://:{password}@{REDIS}:6379/0"
    (container,) = statefulset(rendered, REDIS)["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[command.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]}
    assert env["REDIS_PASSWORD"] == {"name": REDIS_AUTH, "key": "password"}
    assert env["REDISCLI_AUTH"] == {"name": REDIS_AUTH, "key": "password"}
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    assert "redis-cli ping" in probe and "PONG" in probe, "a NOAUTH answer must fail readiness"
    assert "-a" not in container["readinessProbe"]["exec"]["command"]


def test_passwords_are_rendered_into_their_secrets_and_nowhere_else(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    for secret, template in ((REDIS_AUTH, "redis/secret.yaml"), (POSTGRESQL_AUTH, "postgresql/secret.yaml")):
        password = secret_value(rendered, secret, "password")
        encodings = {password, base64.b64encode(password.encode()).decode()}
        leaks = [
            path
            for path, text in rendered.templates.items()
            if any(form in text for form in encodings) and not path.endswith(template)
        ]
        assert leaks == [], f"the {secret} password leaked into {leaks}"


def test_generated_secrets_survive_uninstall_and_each_render_draws_new_ones_offline(render: Any) -> None:
    first, second = render(), render()
    for name in (REDIS_AUTH, POSTGRESQL_AUTH):
        (secret,) = [s for s in first.of_kind("Secret") if s["metadata"]["name"] == name]
        assert secret["metadata"]["annotations"][KEEP] == "keep"
        assert secret_value(first, name, "password") != secret_value(second, name, "password"), (
            "offline there is nothing to look up: a fresh password each time (install keeps the stored one)"
        )


def test_users_own_secrets_for_the_bundled_services_replace_the_generated_ones(render: Any) -> None:
    rendered = render(
        {
            "redis": {"bundled": {"auth": {"existingSecret": "my-redis"}}},
            "database": {"bundled": {"auth": {"existingSecret": "my-pg"}}},
        }
    )
    assert not rendered.of_kind("Secret")
    assert pool_spec(rendered)["redis"] == {"urlSecretRef": {"name": "my-redis", "key": "url"}}
    (container,) = statefulset(rendered, REDIS)["spec"]["template"]["spec"]["containers"]
    assert {item["valueFrom"]["secretKeyRef"]["name"] for item in container["env"]} == {"my-redis"}


def test_notes_no_longer_call_redis_open_and_say_where_the_data_is(render: Any) -> None:
    notes = render(namespace=NAMESPACE).notes
    assert "without a password" not in notes
    assert REDIS_AUTH in notes and POSTGRESQL_AUTH in notes and OUTPUTS_CLAIM in notes
    assert "db stats" in notes


# --- NetworkPolicies ------------------------------------------------------------------------


def policy(rendered: Any, name: str) -> dict[str, Any]:
    (found,) = [p for p in rendered.of_kind("NetworkPolicy") if p["metadata"]["name"] == name]
    return found


def admitted(policy_body: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a pod of the policy's namespace with ``labels`` may connect (podSelector peers only)."""
    return any(
        selects(peer["podSelector"], labels)
        for rule in policy_body["spec"]["ingress"]
        for peer in rule["from"]
        if set(peer) == {"podSelector"}
    )


def pod_labels(rendered: Any, kind: str, name: str) -> dict[str, str]:
    (found,) = [o for o in rendered.of_kind(kind) if o["metadata"]["name"] == name]
    labels: dict[str, str] = found["spec"]["template"]["metadata"]["labels"]
    return labels


def test_redis_admits_the_operator_and_every_role_of_the_pool_and_no_other_pod(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    redis = policy(rendered, REDIS)
    assert redis["spec"]["policyTypes"] == ["Ingress"]
    assert selects(redis["spec"]["podSelector"], pod_labels(rendered, "StatefulSet", REDIS))
    assert admitted(redis, pod_labels(rendered, "Deployment", OPERATOR))
    for role in ("llm", "reconciler", "recorder"):
        assert admitted(redis, worker_pod(rendered, role)["metadata"]["labels"]), role
    assert not admitted(redis, pod_labels(rendered, "StatefulSet", POSTGRESQL))
    assert not admitted(redis, {"app": "curious-neighbour"})
    (rule,) = redis["spec"]["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    (container,) = statefulset(rendered, REDIS)["spec"]["template"]["spec"]["containers"]
    assert "redis" in [port["name"] for port in container["ports"]]


def test_postgresql_admits_the_pools_workers_but_not_the_operator(render: Any) -> None:
    rendered = render(namespace=NAMESPACE)
    database = policy(rendered, POSTGRESQL)
    assert selects(database["spec"]["podSelector"], pod_labels(rendered, "StatefulSet", POSTGRESQL))
    assert admitted(database, worker_pod(rendered, "reconciler")["metadata"]["labels"])
    assert not admitted(database, pod_labels(rendered, "Deployment", OPERATOR))
    assert database["spec"]["ingress"][0]["ports"] == [{"port": "postgresql", "protocol": "TCP"}]


def test_operator_port_admits_the_helm_test_pod_and_the_allow_list(render: Any) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    rendered = render({"networkPolicy": {"operatorAllowFrom": [prometheus]}}, namespace=NAMESPACE)
    operator = policy(rendered, OPERATOR)
    assert selects(operator["spec"]["podSelector"], pod_labels(rendered, "Deployment", OPERATOR))
    assert admitted(operator, rendered.hook("Pod", "test")["metadata"]["labels"])
    assert not admitted(operator, worker_pod(rendered, "llm")["metadata"]["labels"])
    assert prometheus in operator["spec"]["ingress"][0]["from"]
    assert operator["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_allow_lists_extend_redis_and_postgresql(render: Any) -> None:
    scrapers = {"podSelector": {"matchLabels": {"app": "scraper"}}}
    readers = {"namespaceSelector": {"matchLabels": {"team": "data"}}}
    rendered = render({"networkPolicy": {"redisAllowFrom": [scrapers], "databaseAllowFrom": [readers]}})
    assert admitted(policy(rendered, REDIS), {"app": "scraper"})
    assert readers in policy(rendered, POSTGRESQL)["spec"]["ingress"][0]["from"]
    assert not admitted(policy(rendered, POSTGRESQL), {"app": "scraper"})


def test_network_policies_can_be_turned_off(render: Any) -> None:
    assert not render({"networkPolicy": {"enabled": False}}).of_kind("NetworkPolicy")
