"""Invalid pools of every kind against both gates: the CRD's openAPIV3Schema (what the apiserver
refuses at ``kubectl apply``, checked here with jsonschema) and the operator's own validation
(the ``InvalidSpec`` condition). Reuses the tables of ``test_api_validation``.

Every invalid pool is refused by at least one gate; every valid pool passes both; what the schema
cannot express (relations between fields, names, URL schemes) is the operator's, and stays so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from pirate_operator.api import InvalidPoolError, crd_manifest, parse_pool
from tests.unit.test_api_validation import INVALID, VALID, Body, role_change, spec_change, valid_pool

SCHEMA = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
#: OpenAPI v3's schema objects are a JSON Schema draft 4 dialect; x-kubernetes-* are ignored.
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)

#: Cases of ``INVALID`` the apiserver itself refuses (types, ranges, enums, required, lengths).
SCHEMA_REFUSES = {
    "workersPerPod 0",
    "workersPerPod 21",
    "callsPerWorker 0",
    "callsPerWorker 257",
    "unknown provider",
    "negative interval",
    "zero interval",
    "negative pod start",
    "pod start over 600 s",
    "missing image",
    "empty image",
    "no roles",
    "targetJobsPerWorker 0",
    "negative activation",
    "policy period over the HPA's 1800 s",
    "unknown policy type",
    "unknown selectPolicy",
    "spec not an object",
    "outputs without a claim name",
    "ephemeralResults not a boolean",
}
#: Sent as null, which the apiserver drops before validating; only the models see it.
NOT_COMPARABLE = {"min above the role's default max"}


def schema_errors(body: Body) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(body)]


def mutated(mutate: Callable[[Body], None]) -> Body:
    body = valid_pool()
    mutate(body)
    return body


@pytest.mark.parametrize("mutate", [m for _, m in VALID], ids=[i for i, _ in VALID])
def test_valid_pools_pass_the_schema_too(mutate: Callable[[Body], None]) -> None:
    assert schema_errors(mutated(mutate)) == []


CASES = [(i, m) for i, m, _ in INVALID if i not in NOT_COMPARABLE]


@pytest.mark.parametrize("mutate", [m for _, m in CASES], ids=[i for i, _ in CASES])
def test_each_invalid_pool_is_refused_by_the_gate_that_can_see_it(
    request: pytest.FixtureRequest, mutate: Callable[[Body], None]
) -> None:
    case = request.node.callspec.id
    errors = schema_errors(mutated(mutate))
    if case in SCHEMA_REFUSES:
        assert errors, f"the CRD schema lets {case!r} through"
    else:
        # Relations between fields, role names, URL schemes, typos (the apiserver prunes unknown
        # fields): only the operator can tell, so its one-line problem is what users see.
        assert errors == [], errors
    with pytest.raises(InvalidPoolError):
        parse_pool(mutated(mutate))


#: More kinds of wrong: values of the wrong JSON type, everywhere a user types one.
WRONG_TYPES: list[tuple[str, Callable[[Body], None], str]] = [
    ("maxReplicas a string", role_change("llm", maxReplicas="ten"), "spec.roles.llm.maxReplicas"),
    ("minReplicas a float", role_change("llm", minReplicas=1.5), "spec.roles.llm.minReplicas"),
    ("negative maxReplicas", role_change("reconciler", maxReplicas=-1), "spec.roles.reconciler.maxReplicas"),
    ("paused a string", spec_change(paused="yes"), "spec.paused"),
    ("dryRun a number", spec_change(dryRun=1), "spec.dryRun"),
    (
        "gatedByProvider a string",
        role_change("llm", gatedByProvider="false"),
        "spec.roles.llm.gatedByProvider",
    ),
    ("roles a list", spec_change(roles=[{"llm": {}}]), "spec.roles"),
    ("queues a string", role_change("bulk", queues="default"), "spec.roles.bulk.queues"),
    ("env an object", role_change("llm", env={"A": "1"}), "spec.roles.llm.env"),
    ("image a number", spec_change(image=42), "spec.image"),
    ("redis url a number", spec_change(redis={"url": 6379}), "spec.redis.url"),
    ("redis an empty url", spec_change(redis={"url": ""}), "spec.redis.url"),
    ("secret ref without key", spec_change(redis={"urlSecretRef": {"name": "r"}}), "spec.redis.urlSecretRef"),
    ("provider a string", spec_change(provider="anthropic"), "spec.provider"),
    ("quota negative", spec_change(quota={"probeReplicas": -1}), "spec.quota.probeReplicas"),
    ("jobTimeoutSeconds 0", role_change("llm", jobTimeoutSeconds=0), "spec.roles.llm.jobTimeoutSeconds"),
    (
        "policy value 0",
        spec_change(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}),
        "spec.behavior.scaleUp.policies[0].value",
    ),
    (
        "negative stabilization window",
        spec_change(behavior={"scaleDown": {"stabilizationWindowSeconds": -1}}),
        "spec.behavior.scaleDown.stabilizationWindowSeconds",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [(m, f) for _, m, f in WRONG_TYPES], ids=[i for i, _, _ in WRONG_TYPES]
)
def test_wrong_types_are_refused_by_both_gates_naming_the_field(
    mutate: Callable[[Body], None], field: str
) -> None:
    body: dict[str, Any] = mutated(mutate)
    assert schema_errors(body), "the CRD schema lets it through"
    with pytest.raises(InvalidPoolError) as caught:
        parse_pool(body)
    assert any(problem.startswith(field) for problem in caught.value.problems), caught.value.problems
    assert "\n" not in str(caught.value)
