"""Invalid pools are refused with one clear line per problem, naming the field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest

from pirate_operator.api import InvalidPoolError, PirateWorkerPool, parse_pool

Body = dict[str, Any]


def valid_pool() -> Body:
    return {
        "apiVersion": "pirateradio.dev/v1alpha1",
        "kind": "PirateWorkerPool",
        "metadata": {"name": "pantry", "namespace": "food"},
        "spec": {
            "image": "ghcr.io/example/pirate-worker:0.1.0",
            "redis": {"url": "redis://redis:6379/0"},
            "provider": {
                "name": "anthropic",
                "model": "claude-sonnet-4-20250514",
                "apiKeySecretRef": {"name": "llm-keys", "key": "anthropic"},
            },
            "roles": {
                "llm": {"maxReplicas": 10, "workersPerPod": 2},
                "reconciler": {"maxReplicas": 5},
                "recorder": {"maxReplicas": 2},
            },
        },
    }


def spec_change(**changes: Any) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        body["spec"].update(changes)

    return apply


def role_change(role: str, **changes: Any) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        body["spec"]["roles"].setdefault(role, {}).update(changes)

    return apply


def both(*mutations: Callable[[Body], None]) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        for mutate in mutations:
            mutate(body)

    return apply


def remove(*path: str) -> Callable[[Body], None]:
    def apply(body: Body) -> None:
        node = body
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


INVALID: list[tuple[str, Callable[[Body], None], str]] = [
    (
        "min above max",
        role_change("llm", minReplicas=5, maxReplicas=2),
        "spec.roles.llm: minReplicas 5 is above maxReplicas 2",
    ),
    (
        "min above the role's default max",
        role_change("recorder", minReplicas=3, maxReplicas=None),
        "spec.roles.recorder: minReplicas 3 is above maxReplicas 2",
    ),
    (
        "workersPerPod 0",
        role_change("llm", workersPerPod=0),
        "spec.roles.llm.workersPerPod: must be greater than or equal to 1 (got 0)",
    ),
    (
        "workersPerPod 21",
        role_change("llm", workersPerPod=21),
        "spec.roles.llm.workersPerPod: must be less than or equal to 20 (got 21)",
    ),
    (
        "callsPerWorker 0",
        role_change("llm", callsPerWorker=0),
        "spec.roles.llm.callsPerWorker: must be greater than or equal to 1 (got 0)",
    ),
    (
        "callsPerWorker 257",
        role_change("llm", callsPerWorker=257),
        "spec.roles.llm.callsPerWorker: must be less than or equal to 256 (got 257)",
    ),
    (
        "callsPerWorker on a role without the llm queue",
        role_change("reconciler", callsPerWorker=4),
        "spec.roles.reconciler.callsPerWorker: 4 needs a role that consumes the llm queue "
        "(only llm jobs hold provider calls)",
    ),
    (
        "callsPerWorker on a custom role without the llm queue",
        role_change("bulk", queues=["default"], callsPerWorker=2),
        "spec.roles.bulk.callsPerWorker: 2 needs a role that consumes the llm queue",
    ),
    (
        "unknown provider",
        spec_change(provider={"name": "gemini"}),
        "spec.provider.name: must be 'anthropic', 'claude', 'openai', 'ollama' or 'rules' (got 'gemini')",
    ),
    (
        "negative interval",
        spec_change(pollingIntervalSeconds=-2),
        "spec.pollingIntervalSeconds: must be greater than or equal to 1 (got -2)",
    ),
    (
        "zero interval",
        spec_change(pollingIntervalSeconds=0),
        "spec.pollingIntervalSeconds: must be greater than or equal to 1",
    ),
    (
        "negative pod start",
        spec_change(podStartSeconds=-1),
        "spec.podStartSeconds: must be greater than or equal to 0 (got -1)",
    ),
    (
        "pod start over 600 s",
        spec_change(podStartSeconds=601),
        "spec.podStartSeconds: must be less than or equal to 600 (got 601)",
    ),
    (
        "custom role without queues",
        role_change("bulk", maxReplicas=3),
        "spec.roles.bulk.queues: required for custom role bulk",
    ),
    (
        "both redis url and secret",
        spec_change(redis={"url": "redis://r:6379/0", "urlSecretRef": {"name": "redis", "key": "url"}}),
        "spec.redis: give either url or urlSecretRef, not both",
    ),
    ("neither redis url nor secret", spec_change(redis={}), "spec.redis: give url or urlSecretRef"),
    (
        "redis url scheme",
        spec_change(redis={"url": "http://redis:6379"}),
        "spec.redis.url: must start with redis://",
    ),
    (
        "both database url and secret",
        spec_change(
            database={"url": "postgresql://pirate@db/hsds", "urlSecretRef": {"name": "db", "key": "url"}}
        ),
        "spec.database: give either url or urlSecretRef, not both",
    ),
    ("neither database url nor secret", spec_change(database={}), "spec.database: give url or urlSecretRef"),
    (
        "database url scheme",
        spec_change(database={"url": "mysql://pirate@db/hsds"}),
        "spec.database.url: must start with sqlite://, postgresql://, postgresql+psycopg://",
    ),
    (
        "database url with a password",
        spec_change(database={"url": "postgresql://pirate:hunter2@db/hsds"}),
        "spec.database.url: carries a password; put the URL in a Secret and use spec.database.urlSecretRef",
    ),
    (
        "postgresql url without a database",
        spec_change(database={"url": "postgresql://pirate@db"}),
        "spec.database.url: a PostgreSQL URL needs a database name",
    ),
    (
        "sqlite url without a file",
        spec_change(database={"url": "sqlite://"}),
        "spec.database.url: a SQLite URL needs a file",
    ),
    (
        "outputs without a claim name",
        spec_change(outputs={"persistentVolumeClaim": {}}),
        "spec.outputs.persistentVolumeClaim.claimName: required",
    ),
    (
        "ephemeralResults not a boolean",
        spec_change(ephemeralResults="yes"),
        "spec.ephemeralResults: must be a valid boolean",
    ),
    (
        "grace period shorter than the job timeout",
        role_change("llm", terminationGracePeriodSeconds=600),
        "spec.roles.llm.terminationGracePeriodSeconds: 600 is below jobTimeoutSeconds 600 + 30",
    ),
    (
        "grace period checked against an explicit timeout",
        role_change("recorder", jobTimeoutSeconds=120, terminationGracePeriodSeconds=100),
        "jobTimeoutSeconds 120 + 30",
    ),
    (
        "probe above the max of a gated role",
        both(role_change("llm", maxReplicas=2), spec_change(quota={"probeReplicas": 3})),
        "spec.quota.probeReplicas: 3 is above maxReplicas 2 of provider-gated role llm",
    ),
    (
        "blocked above probing",
        spec_change(quota={"probeReplicas": 1, "replicasWhenBlocked": 2}),
        "spec.quota: replicasWhenBlocked 2 is above probeReplicas 1",
    ),
    (
        "anthropic without an API key",
        spec_change(provider={"name": "anthropic"}),
        "spec.provider.apiKeySecretRef: required for provider anthropic",
    ),
    (
        "openai without key or base URL",
        spec_change(provider={"name": "openai"}),
        "spec.provider.apiKeySecretRef: required for provider openai unless baseUrl is set",
    ),
    ("typo in a field name", role_change("llm", maxReplica=3), "spec.roles.llm.maxReplica: unknown field"),
    (
        "role name not a DNS label",
        role_change("Bulk_Jobs", queues=["bulk"]),
        "spec.roles.Bulk_Jobs: role name must be a DNS label",
    ),
    (
        "one queue, two roles",
        role_change("llm-fast", queues=["llm"]),
        "spec.roles: queue 'llm' is served by roles llm and llm-fast",
    ),
    (
        "built-in role on other queues",
        role_change("recorder", queues=["audit"]),
        "spec.roles.recorder.queues: built-in role recorder listens on recorder",
    ),
    (
        "queue listed twice",
        role_change("bulk", queues=["a", "a"]),
        "spec.roles.bulk.queues: 'a' is listed twice",
    ),
    (
        "env variable set twice",
        role_change("llm", env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.roles.llm.env: A is set twice",
    ),
    (
        "env with value and valueFrom",
        role_change(
            "llm", env=[{"name": "A", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
        ),
        "spec.roles.llm.env[0] (A): give value or valueFrom, not both",
    ),
    ("missing image", remove("spec", "image"), "spec.image: required"),
    ("empty image", spec_change(image=""), "spec.image: must have at least 1 character"),
    ("no roles", spec_change(roles={}), "spec.roles: must have at least 1 item"),
    (
        "targetJobsPerWorker 0",
        role_change("llm", targetJobsPerWorker=0),
        "spec.roles.llm.targetJobsPerWorker: must be greater than or equal to 1",
    ),
    (
        "negative activation",
        role_change("llm", activationJobs=-1),
        "spec.roles.llm.activationJobs: must be greater than or equal to 0",
    ),
    (
        "policy period over the HPA's 1800 s",
        spec_change(
            behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 3600}]}}
        ),
        "spec.behavior.scaleUp.policies[0].periodSeconds: must be less than or equal to 1800",
    ),
    (
        "unknown policy type",
        spec_change(
            behavior={"scaleDown": {"policies": [{"type": "Jobs", "value": 1, "periodSeconds": 15}]}}
        ),
        "spec.behavior.scaleDown.policies[0].type: must be 'Pods' or 'Percent' (got 'Jobs')",
    ),
    (
        "unknown selectPolicy",
        role_change("llm", behavior={"scaleUp": {"selectPolicy": "Fastest"}}),
        "spec.roles.llm.behavior.scaleUp.selectPolicy: must be 'Max', 'Min' or 'Disabled' (got 'Fastest')",
    ),
    (
        "spec not an object",
        lambda body: body.update(spec="x"),
        "spec: must be an object (got 'x')",
    ),
    (
        "pool name too long for a label",
        lambda body: body["metadata"].update(name="p" * 64),
        "metadata.name: at most 63 characters",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "problem"), [(m, p) for _, m, p in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_pool_has_one_clear_problem(mutate: Callable[[Body], None], problem: str) -> None:
    body = valid_pool()
    mutate(body)
    with pytest.raises(InvalidPoolError) as caught:
        parse_pool(body)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    assert problem in problems[0]
    assert "\n" not in str(caught.value)
    assert problem in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    body = valid_pool()
    role_change("llm", minReplicas=20)(body)
    role_change("bulk")(body)
    spec_change(redis={})(body)
    with pytest.raises(InvalidPoolError, match=r"invalid PirateWorkerPool \(3 problems\): ") as caught:
        parse_pool(body)
    assert [line.split(":")[0] for line in caught.value.problems] == [
        "spec.redis",
        "spec.roles.bulk.queues",
        "spec.roles.llm",
    ]


VALID: list[tuple[str, Callable[[Body], None]]] = [
    ("as given", lambda body: None),
    ("roles omitted", remove("spec", "roles")),
    (
        "openai-compatible endpoint without a key",
        spec_change(provider={"name": "openai", "baseUrl": "http://llm:8000/v1"}),
    ),
    ("ollama needs no key", spec_change(provider={"name": "ollama", "baseUrl": "http://ollama:11434"})),
    ("rules provider", spec_change(provider={"name": "rules"})),
    ("pod start 0", spec_change(podStartSeconds=0)),
    (
        "scale-down window set explicitly to the HPA's",
        spec_change(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}}),
    ),
    ("redis URL from a secret", spec_change(redis={"urlSecretRef": {"name": "redis", "key": "url"}})),
    ("database URL from a secret", spec_change(database={"urlSecretRef": {"name": "db", "key": "url"}})),
    ("database URL without a password", spec_change(database={"url": "postgresql+psycopg://pirate@db/hsds"})),
    ("SQLite database file", spec_change(database={"url": "sqlite:////var/lib/pirate-workers/outputs/h.db"})),
    ("outputs on a claim", spec_change(outputs={"persistentVolumeClaim": {"claimName": "out"}})),
    ("ephemeral results", spec_change(ephemeralResults=True)),
    ("llm disabled with maxReplicas 0", role_change("llm", maxReplicas=0)),
    ("built-in role naming its own queue", role_change("llm", queues=["llm"])),
    ("custom role", role_change("bulk", queues=["default", "high"], gatedByProvider=True)),
    ("long grace period", role_change("llm", terminationGracePeriodSeconds=900)),
    ("llm calls per worker", role_change("llm", callsPerWorker=256)),
    ("callsPerWorker 1 on any role", role_change("recorder", callsPerWorker=1)),
    (
        "env from a secret",
        role_change("llm", env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
    ),
    (
        "free-form resources",
        role_change("llm", resources={"limits": {"memory": "512Mi"}, "claims": [{"name": "gpu"}]}),
    ),
]


@pytest.mark.parametrize("mutate", [m for _, m in VALID], ids=[i for i, _ in VALID])
def test_valid_pool_parses(mutate: Callable[[Body], None]) -> None:
    body = valid_pool()
    mutate(body)
    assert isinstance(parse_pool(body), PirateWorkerPool)


def test_read_only_mappings_are_accepted() -> None:
    """kopf hands bodies out as read-only mapping views."""

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return MappingProxyType({key: frozen(item) for key, item in value.items()})
        return value

    body = valid_pool()
    assert parse_pool(frozen(body)) == parse_pool(body)


def test_unreadable_status_does_not_make_the_pool_invalid(caplog: pytest.LogCaptureFixture) -> None:
    body = valid_pool()
    body["status"] = {"roles": {"llm": {"replicas": "many"}}}
    pool = parse_pool(copy.deepcopy(body))
    assert pool.status.roles == {}
    assert "ignoring unreadable status of pantry" in caplog.text


def test_kopf_progress_in_status_is_ignored() -> None:
    body = valid_pool()
    body["status"] = {"kopf": {"progress": {}}, "queued": 3}
    assert parse_pool(body).status.queued == 3
