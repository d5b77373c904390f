"""The generated CRD: structural (apiextensions.k8s.io/v1), self-consistent, stable, and in step
with the pydantic models it is generated from.

The checks below re-implement the parts of the apiserver's rules this CRD relies on (structural
schema, pruning, defaulting top-down), so a model change that would be refused by a real apiserver
or defaulted differently from the models fails here first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from pirate_operator.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    PirateWorkerPool,
    PoolStatus,
    ProviderStatus,
    Recommendation,
    RoleStatus,
    crd_manifest,
    crd_yaml,
    effective_roles,
    parse_pool,
)
from pirate_operator.api.schema import SchemaError, structural_schema
from pirate_worker.contracts.provider_state import ProviderCondition

DESIGN_EXAMPLE = """
apiVersion: pirateradio.dev/v1alpha1
kind: PirateWorkerPool
metadata: {name: pantry, generation: 3}
spec:
  image: ghcr.io/example/pirate-worker:0.1.0
  redis: {url: redis://redis:6379/0}
  provider: {name: anthropic, model: claude-sonnet-4-20250514,
             apiKeySecretRef: {name: llm-keys, key: anthropic}}
  pollingIntervalSeconds: 2
  roles:
    llm:        {minReplicas: 0, maxReplicas: 10, workersPerPod: 2, targetJobsPerWorker: 1,
                 jobTimeoutSeconds: 600}
    reconciler: {minReplicas: 0, maxReplicas: 5}
    recorder:   {minReplicas: 0, maxReplicas: 2}
    custom:     {queues: [default, high]}
  database: {urlSecretRef: {name: hsds-db, key: url}}
  outputs: {persistentVolumeClaim: {claimName: pirate-outputs}}
  quota: {replicasWhenBlocked: 0, probeReplicas: 1}
  behavior:
    scaleUp:   {stabilizationWindowSeconds: 0,   policies: [{type: Pods, value: 4, periodSeconds: 15},
                                                            {type: Percent, value: 100, periodSeconds: 15}]}
    scaleDown: {stabilizationWindowSeconds: 300, policies: [{type: Percent, value: 100, periodSeconds: 15}]}
  paused: false
  dryRun: false
status:
  observedGeneration: 3
  provider: {state: ok, retryAt: null, message: ""}
  queued: 37
  roles:
    llm: {replicas: 2, desiredReplicas: 4, queued: 37, inFlight: 4, scheduled: 0, busyWorkers: 4,
          reason: "demand 41 / target 2 per pod", lastScaleTime: "2025-01-01T12:00:00Z"}
  conditions:
  - {type: Ready, status: "True", reason: Scaling, message: "", lastTransitionTime: "2025-01-01T12:00:00Z"}
"""

MINIMAL = {
    "apiVersion": "pirateradio.dev/v1alpha1",
    "kind": "PirateWorkerPool",
    "metadata": {"name": "pantry"},
    "spec": {
        "image": "ghcr.io/example/pirate-worker:0.1.0",
        "redis": {"url": "redis://redis:6379/0"},
        "provider": {"name": "rules"},
    },
}

_ALLOWED_KEYS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "pattern",
    "format",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def root_schema() -> dict[str, Any]:
    (version,) = crd_manifest()["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with a readable path (``spec.roles.*.env[]``)."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    problems = []
    for path, node in walk(schema):
        where = path or "<root>"
        unknown = set(node) - _ALLOWED_KEYS
        if unknown:
            problems.append(f"{where}: not allowed in a structural schema: {sorted(unknown)}")
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        if node.get("type") not in _TYPES and not preserve:
            problems.append(f"{where}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties together")
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties false")
        if path and path != "metadata" and not node.get("description") and not path.endswith(("[]", ".*")):
            problems.append(f"{where}: no description (kubectl explain would be empty)")
        if "required" in node and not set(node["required"]) <= set(node.get("properties", {})):
            problems.append(f"{where}: required names undeclared properties")
    return problems


def schema_errors(value: Any, schema: Mapping[str, Any], path: str = "") -> list[str]:
    """Validate ``value`` as the apiserver would (the keywords this CRD uses, plus pruning)."""
    where = path or "<root>"
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null but not nullable"]
    kind = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if kind in checks and not checks[kind](value):
        return [f"{where}: {value!r} is not {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below minimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: above maximum")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{where}: too short")
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{where}: too few items")
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(f"{where}: too few properties")
    if schema.get("format") == "date-time":
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    if kind == "array":
        for index, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{index}]")
    if kind == "object" and not schema.get("x-kubernetes-preserve-unknown-fields"):
        errors += [f"{where}.{name}: required" for name in schema.get("required", []) if name not in value]
        for name, item in value.items():
            if path == "" and name == "metadata":
                continue  # ObjectMeta: validated by the apiserver itself, never by the CRD schema
            if name in schema.get("properties", {}):
                errors += schema_errors(item, schema["properties"][name], f"{where}.{name}")
            elif isinstance(schema.get("additionalProperties"), Mapping):
                errors += schema_errors(item, schema["additionalProperties"], f"{where}.{name}")
            else:
                errors.append(f"{where}.{name}: unknown field (would be pruned)")
    return errors


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """The apiserver's structural defaulting: fill absent fields, then descend (defaults too)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = yaml.safe_load(yaml.safe_dump(child["default"]))
        for name, item in value.items():
            if name in schema.get("properties", {}):
                apply_defaults(item, schema["properties"][name])
            elif isinstance(schema.get("additionalProperties"), Mapping):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def test_schema_is_structural() -> None:
    assert structural_problems(root_schema()) == []


def test_checker_catches_what_the_apiserver_refuses() -> None:
    """The checker itself must fail on the usual pydantic leftovers."""
    bad = {
        "type": "object",
        "description": "x",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "a"},
            "b": {"$ref": "#/$defs/B", "description": "b"},
            "c": {"type": "string", "title": "C", "description": "c"},
            "d": {"type": "string"},
        },
    }
    problems = "\n".join(structural_problems(bad))
    for fragment in ("a: not allowed", "a: no type", "b: not allowed", "c: not allowed", "d: no description"):
        assert fragment in problems


def test_free_form_only_where_intended() -> None:
    preserved = [
        path for path, node in walk(root_schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserved == ["spec.roles.*.resources"]


def test_every_default_validates_against_its_own_schema() -> None:
    defaults = [(path, node) for path, node in walk(root_schema()) if "default" in node]
    assert len(defaults) > 20
    for path, node in defaults:
        assert schema_errors(node["default"], node, path) == []
        assert node["default"] != "", f"{path}: Kubernetes 1.20 (Go >= 1.18 build) reads '' as null"


def test_apiserver_defaults_agree_with_the_models() -> None:
    """Defaulting a minimal object with the CRD gives what the models assume for omitted fields."""
    defaulted = apply_defaults(yaml.safe_load(yaml.safe_dump(MINIMAL)), root_schema())
    assert schema_errors(defaulted, root_schema()) == []
    assert sorted(defaulted["spec"]["roles"]) == ["llm", "reconciler", "recorder"]
    assert "stabilizationWindowSeconds" not in defaulted["spec"]["behavior"]["scaleDown"]  # podStartSeconds
    assert defaulted["spec"]["podStartSeconds"] == 10
    assert parse_pool(defaulted) == parse_pool(MINIMAL)


def test_design_example_is_accepted_and_round_trips() -> None:
    body = yaml.safe_load(DESIGN_EXAMPLE)
    assert schema_errors(body, root_schema()) == []
    pool = parse_pool(body)
    assert pool.name == "pantry"
    assert pool.generation == 3
    roles = effective_roles(pool.spec)
    assert roles["llm"].max_replicas == 10
    assert roles["llm"].gated_by_provider
    assert roles["custom"].queues == ("default", "high")
    assert pool.spec.database is not None and pool.spec.database.url_secret_ref is not None
    assert pool.spec.outputs is not None and pool.spec.outputs.persistent_volume_claim.claim_name == (
        "pirate-outputs"
    )
    assert pool.spec.outputs.keep_on_one_node
    assert not pool.spec.ephemeral_results
    assert pool.status.roles["llm"].last_scale_time == datetime(2025, 1, 1, 12, tzinfo=UTC)
    dumped = pool.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert schema_errors(dumped, root_schema()) == []
    assert parse_pool(dumped) == pool


def test_status_merge_patch_validates_and_sends_no_empty_strings() -> None:
    """What the operator patches must pass the schema, clear fields with null, and hold no "".

    (Kubernetes 1.20 built with Go >= 1.18, as hack/kube builds it, refuses "" in string fields.)
    """
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    status = PoolStatus(
        queued=7,
        provider=ProviderStatus(state=ProviderCondition.OK),
        roles={
            "llm": RoleStatus(
                replicas=3,
                desired_replicas=4,
                reason="demand 7 / target 2 per pod → 4",
                recommendations=(Recommendation(time=moment, replicas=4),),
                last_scale_time=moment,
            )
        },
        conditions=(Condition(type=ConditionType.READY, status=ConditionStatus.TRUE, reason="Scaling"),),
    )
    patch = status.as_merge_patch()
    assert patch["status"]["provider"]["message"] is None  # clears a previous message
    assert patch["status"]["provider"]["retryAt"] is None
    assert "message" not in patch["status"]["conditions"][0]  # lists are replaced whole
    assert "" not in set(_leaves(patch)), "no empty strings"
    body = yaml.safe_load(DESIGN_EXAMPLE)
    body["status"] = _merge(body["status"], patch["status"])
    assert schema_errors(body, root_schema()) == []
    assert parse_pool(body).status == status


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge(merged.get(key), value)
    return merged


def test_names_scope_and_subresources() -> None:
    manifest = crd_manifest()
    spec = manifest["spec"]
    assert manifest["apiVersion"] == "apiextensions.k8s.io/v1"
    assert manifest["metadata"]["name"] == "pirateworkerpools.pirateradio.dev"
    assert spec["group"] == "pirateradio.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "PirateWorkerPool"
    assert spec["names"]["plural"] == "pirateworkerpools"
    assert spec["names"]["shortNames"] == ["pwp"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert root_schema()["properties"]["spec"]["required"] == ["image", "provider", "redis"]


def test_printer_columns_point_at_real_fields() -> None:
    (version,) = crd_manifest()["spec"]["versions"]
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert list(columns) == ["Provider", "LLM", "Reconciler", "Recorder", "Queued", "Age"]
    assert columns["Provider"]["jsonPath"] == ".status.provider.state"
    assert columns["LLM"]["jsonPath"] == ".status.roles.llm.replicas"
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    for name, column in columns.items():
        if name == "Age":
            continue
        node: Mapping[str, Any] = root_schema()
        for part in column["jsonPath"].strip(".").split("."):
            node = (
                node["properties"][part]
                if part in node.get("properties", {})
                else node["additionalProperties"]
            )
        assert node["type"] == column["type"], name


def test_yaml_is_stable_ascii_and_parses_back() -> None:
    text = crd_yaml()
    assert text == crd_yaml()
    assert text.isascii()
    assert not re.search(r"[&*]id\d+", text), "YAML anchors make the drift diff unreadable"
    assert yaml.safe_load(text) == crd_manifest()
    assert text.startswith("# ")
    assert text.endswith("\n")


def test_enums_come_from_the_models() -> None:
    spec = root_schema()["properties"]["spec"]["properties"]
    assert spec["provider"]["properties"]["name"]["enum"] == [
        "anthropic",
        "claude",
        "openai",
        "ollama",
        "rules",
    ]
    condition = root_schema()["properties"]["status"]["properties"]["conditions"]["items"]
    assert condition["properties"]["type"]["enum"] == [
        "Ready",
        "RedisReachable",
        "ProviderBlocked",
        "ProviderLimited",
        "Fallback",
        "Paused",
        "InvalidSpec",
        "ResultsNotDurable",
    ]
    role = spec["roles"]["additionalProperties"]["properties"]
    assert (role["workersPerPod"]["minimum"], role["workersPerPod"]["maximum"]) == (1, 20)
    assert (role["callsPerWorker"]["minimum"], role["callsPerWorker"]["maximum"]) == (1, 256)
    assert role["callsPerWorker"]["default"] == 1
    assert "default" not in role["maxReplicas"], "role-dependent defaults must not be in the CRD"


def test_generator_refuses_unions_it_cannot_express() -> None:
    from pydantic import BaseModel, Field

    class Ambiguous(BaseModel):
        value: int | str = Field(description="either")

    with pytest.raises(SchemaError, match="anyOf"):
        structural_schema(Ambiguous)


def test_whole_object_model_matches_the_crd_top_level() -> None:
    assert set(PirateWorkerPool.model_fields) >= {"spec", "status", "metadata"}
    assert set(root_schema()["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
