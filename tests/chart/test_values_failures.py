"""Renders that must fail, and the message a user gets for each.

Types, enums, bounds and unknown keys are caught by values.schema.json before any template runs;
rules across values (exactly one Redis, one source of the API key, ...) by the chart's
``pirate-workers.validate`` helper with ``fail``.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

SCHEMA_VIOLATIONS = [
    ({"replicaCount": 2}, "additional properties 'replicaCount' not allowed"),
    # The trap this chart avoids: nothing but the chart itself decides the operator's replicas.
    ({"operator": {"replicas": 3}}, "at '/operator': additional properties 'replicas' not allowed"),
    ({"operator": {"logLevel": "LOUD"}}, "at '/operator/logLevel': value must be one of"),
    ({"operator": {"httpPort": 70000}}, "at '/operator/httpPort': maximum"),
    ({"operator": {"image": {"pullPolicy": "Sometimes"}}}, "at '/operator/image/pullPolicy'"),
    ({"operator": {"image": {"digest": "md5:abc"}}}, "at '/operator/image/digest'"),
    ({"operator": {"watchNamespaces": ["Team_A"]}}, "at '/operator/watchNamespaces/0'"),
    (
        {"operator": {"resources": {"requests": {"memory": "lots"}}}},
        "at '/operator/resources/requests/memory'",
    ),
    ({"rbac": {"clusterWide": "yes"}}, "at '/rbac/clusterWide': got string, want boolean"),
    ({"redis": {"url": "http://redis:6379"}}, "at '/redis/url': 'http://redis:6379' does not match pattern"),
    (
        {"redis": {"bundled": {"appendfsync": "sometimes"}}},
        "at '/redis/bundled/appendfsync': value must be one of",
    ),
    ({"redis": {"bundled": {"persistence": {"size": "big"}}}}, "at '/redis/bundled/persistence/size'"),
    ({"provider": {"name": "gemini"}}, "at '/provider/name': value must be one of"),
    ({"provider": {"key": "sk-..."}}, "at '/provider': additional properties 'key' not allowed"),
    ({"pool": {"name": "Pantry"}}, "at '/pool/name'"),
    ({"pool": {"pollingIntervalSeconds": 0}}, "at '/pool/pollingIntervalSeconds': minimum"),
    ({"pool": {"podStartSeconds": -1}}, "at '/pool/podStartSeconds': minimum"),
    ({"pool": {"podStartSeconds": 601}}, "at '/pool/podStartSeconds': maximum"),
    (
        {"pool": {"uninstallCleanup": {"timeoutSeconds": 5}}},
        "at '/pool/uninstallCleanup/timeoutSeconds': minimum",
    ),
    (
        {"pool": {"roles": {"llm": {"workersPerPod": 21}}}},
        "at '/pool/roles/llm/workersPerPod': maximum: got 21, want 20",
    ),
    (
        {"pool": {"roles": {"llm": {"replicas": 4}}}},
        "at '/pool/roles/llm': additional properties 'replicas' not allowed",
    ),
    ({"pool": {"roles": {"Bad_Name": {"queues": ["q"]}}}}, "invalid propertyName 'Bad_Name'"),
    (
        {
            "pool": {
                "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}
            }
        },
        "at '/pool/behavior/scaleUp/policies/0/value': minimum",
    ),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "at '/metrics/serviceMonitor/interval'"),
    (
        {"database": {"url": "mysql://db/hsds"}},
        "at '/database/url': 'mysql://db/hsds' does not match pattern",
    ),
    ({"database": {"bundled": {"auth": {"username": "Pirate"}}}}, "at '/database/bundled/auth/username'"),
    ({"database": {"bundled": {"persistence": {"size": "huge"}}}}, "at '/database/bundled/persistence/size'"),
    ({"redis": {"bundled": {"auth": {"password": "x"}}}}, "additional properties 'password' not allowed"),
    (
        {"outputs": {"persistence": {"accessModes": ["ReadOnlyMany"]}}},
        "at '/outputs/persistence/accessModes/0': value must be one of",
    ),
    ({"outputs": {"persistence": {"accessModes": []}}}, "at '/outputs/persistence/accessModes': minItems"),
    (
        {"networkPolicy": {"redisAllowFrom": [{"pods": {"app": "x"}}]}},
        "at '/networkPolicy/redisAllowFrom/0': additional properties 'pods' not allowed",
    ),
    ({"networkPolicy": {"enabled": "on"}}, "at '/networkPolicy/enabled': got string, want boolean"),
    ({"pool": {"ephemeralResults": "yes"}}, "at '/pool/ephemeralResults': got string, want boolean"),
]

RULE_VIOLATIONS = [
    (
        {"redis": {"url": "redis://elsewhere:6379/0"}},
        "redis: set only one of redis.url, redis.existingSecret.name and redis.bundled.enabled "
        "(got redis.url, redis.bundled.enabled); "
        "to use an external Redis also set redis.bundled.enabled=false",
    ),
    (
        {"redis": {"bundled": {"enabled": False}}},
        "redis: pool.enabled needs a Redis: "
        "set redis.url, redis.existingSecret.name, or redis.bundled.enabled=true",
    ),
    (
        {"provider": {"name": "anthropic", "apiKey": "sk", "existingSecret": {"name": "keys", "key": "k"}}},
        "provider: set provider.apiKey or provider.existingSecret.name, not both",
    ),
    (
        {"provider": {"name": "anthropic"}},
        "provider: provider.name=anthropic needs an API key: set provider.existingSecret.name (recommended) "
        "or provider.apiKey",
    ),
    ({"provider": {"name": "openai"}}, "provider: provider.name=openai needs an API key"),
    (
        {"rbac": {"clusterWide": True}, "operator": {"watchNamespaces": ["a"]}},
        "rbac: operator.watchNamespaces lists namespaces but rbac.clusterWide=true watches all of them",
    ),
    (
        {"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}},
        "metrics: metrics.serviceMonitor.enabled needs metrics.service.enabled=true",
    ),
    (
        {"pool": {"roles": {"scraper": {"maxReplicas": 2}}}},
        "pool: custom role pool.roles.scraper needs queues",
    ),
    (
        {"pool": {"roles": {"llm": {"minReplicas": 5, "maxReplicas": 2}}}},
        "pool: pool.roles.llm.minReplicas (5) is greater than maxReplicas (2)",
    ),
    (
        {"rbac": {"create": False}},
        "pool: pool.uninstallCleanup.enabled needs rbac.create=true",
    ),
    (
        {"serviceAccount": {"create": False}},
        "serviceAccount.name is required when serviceAccount.create is false",
    ),
    (
        {"database": {"url": "postgresql://pirate@db/hsds"}},
        "database: set only one of database.url, database.existingSecret.name and "
        "database.bundled.enabled (got database.url, database.bundled.enabled)",
    ),
    (
        {"database": {"bundled": {"enabled": False}, "url": "postgresql://pirate:hunter2@db/hsds"}},
        "database: database.url carries a password, which would be stored in the pool's spec; "
        "put the URL in a Secret and set database.existingSecret.name instead",
    ),
    (
        {"database": {"bundled": {"enabled": False}}},
        "database: the pool's HSDS records need a database that outlives its pods: set database.url, "
        "database.existingSecret.name or database.bundled.enabled=true "
        "(or pool.ephemeralResults=true for a throwaway run)",
    ),
    (
        {"database": {"bundled": {"persistence": {"enabled": False}}}},
        "database: database.bundled.persistence.enabled=false keeps the HSDS database on an emptyDir",
    ),
    (
        {"outputs": {"persistence": {"enabled": False}}},
        "outputs: outputs.persistence.enabled=false puts the recorder's files on storage deleted "
        "with each pod",
    ),
    (
        {"outputs": {"keepOnOneNode": False}},
        "outputs: outputs.keepOnOneNode=false spreads recorder pods over nodes, which needs "
        "outputs.persistence.accessModes to include ReadWriteMany",
    ),
]


@pytest.mark.parametrize(("values", "message"), SCHEMA_VIOLATIONS, ids=[m for _, m in SCHEMA_VIOLATIONS])
def test_schema_violation_fails_naming_the_value(render: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as raised:
        render(values)
    assert "values don't meet the specifications of the schema" in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(("values", "message"), RULE_VIOLATIONS, ids=[m[:60] for _, m in RULE_VIOLATIONS])
def test_rule_violation_fails_with_one_clear_line(render: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as raised:
        render(values)
    assert message in str(raised.value)


def test_schema_is_closed_at_every_level_the_chart_defines(chart: helm_python.Chart) -> None:
    """Every object of values.yaml is declared in the schema, and chart-defined objects are closed."""
    schema = chart.schema
    assert schema is not None

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    def check(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        properties = node.get("properties", {})
        for key, value in values.items():
            assert key in properties or isinstance(node.get("additionalProperties"), dict), (
                f"{path}{key} is not declared in values.schema.json"
            )
            child = properties.get(key) or node["additionalProperties"]
            if isinstance(value, dict) and value:
                check(value, child, f"{path}{key}.")
        if properties and "additionalProperties" not in node:
            passthrough = {"podSecurityContext", "securityContext"}
            assert path.rstrip(".").rsplit(".", 1)[-1] in passthrough, f"{path or '<root>'} is not closed"

    check(chart.values, schema, "")
