"""Where a pool's results land: the ResultsNotDurable rules, the condition and its Events (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pirate_operator.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    InvalidPoolError,
    effective_roles,
    parse_pool,
)
from pirate_operator.api.results import (
    OUTPUT_DIR,
    database_on_claim,
    durability_problems,
    mounts_outputs,
    sqlite_file,
)
from pirate_operator.kube import EventType
from pirate_operator.reconcile.conditions import merge_conditions, results_not_durable
from pirate_operator.reconcile.events import condition_events

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
CLAIM = {"persistentVolumeClaim": {"claimName": "pirate-outputs"}}
POSTGRES = {"urlSecretRef": {"name": "hsds-db", "key": "url"}}
ON_CLAIM = {"url": f"sqlite:///{OUTPUT_DIR}/hsds.db"}


def _spec(**spec: Any) -> Any:
    body = {
        "apiVersion": "pirateradio.dev/v1alpha1",
        "kind": "PirateWorkerPool",
        "metadata": {"name": "pantry", "namespace": "food"},
        "spec": {"image": "w:1", "redis": {"url": "redis://r:6379/0"}, "provider": {"name": "rules"}, **spec},
    }
    return parse_pool(body).spec


def _problems(**spec: Any) -> list[str]:
    parsed = _spec(**spec)
    return durability_problems(parsed, effective_roles(parsed))


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("bare pool: both on pod storage", {}, ["set spec.database (PostgreSQL)", "set spec.outputs"]),
    ("database and outputs durable", {"database": POSTGRES, "outputs": CLAIM}, []),
    ("postgres URL without password", {"database": {"url": "postgresql://p@db/h"}, "outputs": CLAIM}, []),
    ("outputs missing", {"database": POSTGRES}, ["set spec.outputs.persistentVolumeClaim"]),
    ("database missing", {"outputs": CLAIM}, ["set spec.database (PostgreSQL)"]),
    (
        "SQLite in the work dir",
        {"database": {"url": "sqlite:///hsds.db"}, "outputs": CLAIM},
        ["SQLite file hsds.db is on each reconciler pod's own storage"],
    ),
    (
        "SQLite on the claim path without a claim",
        {"database": ON_CLAIM},
        [f"SQLite file {OUTPUT_DIR}/hsds.db is on each reconciler pod's own storage", "set spec.outputs"],
    ),
    (
        "SQLite on the claim with five reconcilers",
        {"database": ON_CLAIM, "outputs": CLAIM},
        ["role reconciler may run 5 replicas: set its maxReplicas to 1"],
    ),
    (
        "SQLite on the claim with one reconciler",
        {"database": ON_CLAIM, "outputs": CLAIM, "roles": {"reconciler": {"maxReplicas": 1}, "recorder": {}}},
        [],
    ),
    ("no reconciler, no recorder: nothing to keep", {"roles": {"llm": {}}}, []),
    (
        "custom role on the reconciler queue writes the database",
        {"outputs": CLAIM, "roles": {"hsds": {"queues": ["reconciler"]}}},
        ["set spec.database (PostgreSQL)"],
    ),
    (
        "custom role on the recorder queue writes files",
        {"database": POSTGRES, "roles": {"audit": {"queues": ["recorder", "default"]}}},
        ["set spec.outputs.persistentVolumeClaim"],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_durability_problems(spec: dict[str, Any], expected: list[str]) -> None:
    problems = _problems(**spec)
    assert len(problems) == len(expected), problems
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_sqlite_file_paths() -> None:
    assert (
        sqlite_file("sqlite:////var/lib/pirate-workers/outputs/h.db")
        == "/var/lib/pirate-workers/outputs/h.db"
    )
    assert sqlite_file("sqlite:///relative.db") == "relative.db"
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("postgresql://p@db/h") is None


def test_who_mounts_the_claim() -> None:
    spec = _spec(database=ON_CLAIM, outputs=CLAIM)
    roles = effective_roles(spec)
    assert database_on_claim(spec)
    assert {name for name, role in roles.items() if mounts_outputs(spec, role)} == {"reconciler", "recorder"}
    spec = _spec(database=POSTGRES, outputs=CLAIM)
    roles = effective_roles(spec)
    assert {name for name, role in roles.items() if mounts_outputs(spec, role)} == {"recorder"}
    assert not any(mounts_outputs(_spec(), role) for role in effective_roles(_spec()).values())


def test_a_password_in_the_database_url_is_refused_without_being_echoed() -> None:
    with pytest.raises(InvalidPoolError) as caught:
        _spec(database={"url": "postgresql://pirate:s3cret-pw@db/hsds"})
    assert "s3cret-pw" not in str(caught.value)


def test_condition_true_names_the_fields_and_the_opt_out() -> None:
    wanted = results_not_durable(_problems(), ephemeral=False)
    assert wanted.status == ConditionStatus.TRUE
    assert wanted.reason == "PodLocalResults"
    assert "spec.database" in wanted.message
    assert "spec.outputs" in wanted.message
    assert "spec.ephemeralResults: true" in wanted.message


def test_opting_out_and_durable_pools_are_false() -> None:
    opted = results_not_durable(_problems(), ephemeral=True)
    assert (opted.status, opted.reason) == (ConditionStatus.FALSE, "EphemeralResults")
    durable = results_not_durable([], ephemeral=True)
    assert (durable.status, durable.reason) == (ConditionStatus.FALSE, "Durable")


def _conditions(wanted: Any, before: tuple[Condition, ...] = ()) -> tuple[Condition, ...]:
    return merge_conditions(before, {ConditionType.RESULTS_NOT_DURABLE: wanted}, NOW)


def test_warning_event_once_when_results_are_not_durable_and_normal_when_fixed() -> None:
    bad = _conditions(results_not_durable(_problems(), ephemeral=False))
    (event,) = condition_events((), bad)
    assert (event.kind, event.reason) == (EventType.WARNING, "ResultsNotDurable")
    assert "spec.database" in event.message
    assert condition_events(bad, _conditions(results_not_durable(_problems(), ephemeral=False), bad)) == []
    fixed = _conditions(results_not_durable([], ephemeral=False), bad)
    (event,) = condition_events(bad, fixed)
    assert (event.kind, event.reason) == (EventType.NORMAL, "ResultsDurable")
    opted = _conditions(results_not_durable(_problems(), ephemeral=True), bad)
    (event,) = condition_events(bad, opted)
    assert (event.kind, event.reason) == (EventType.NORMAL, "EphemeralResults")


def test_a_durable_or_opted_out_pool_posts_nothing() -> None:
    assert condition_events((), _conditions(results_not_durable([], ephemeral=False))) == []
    assert condition_events((), _conditions(results_not_durable(_problems(), ephemeral=True))) == []
