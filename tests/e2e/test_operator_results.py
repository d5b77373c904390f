"""Results outlive the pods: the operator wires a pool's database and outputs claim into its
Deployments, and flags a pool whose results would land on pod storage (real apiserver, operator)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import OperatorFactory
from tests.support.kube import Kube, holds, poll, pool_manifest

pytestmark = pytest.mark.e2e

CANARY = "pw-canary-7f3a91d2e4"
DATABASE = {"urlSecretRef": {"name": "hsds-db", "key": "url"}}
OUTPUTS = {"persistentVolumeClaim": {"claimName": "pirate-outputs"}}
OUTPUT_DIR = "/var/lib/pirate-workers/outputs"


def _status(kube: Kube, namespace: str, name: str, kind: str) -> str | None:
    return (kube.condition(namespace, name, kind) or {}).get("status")


def _pod(kube: Kube, namespace: str, deployment: str) -> dict[str, Any]:
    template: dict[str, Any] = kube.deployments(namespace)[deployment]["spec"]["template"]
    return template


def _env(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        var["name"]: var.get("value", var.get("valueFrom")) for var in pod["spec"]["containers"][0]["env"]
    }


def test_pod_local_results_are_flagged_until_the_pool_names_durable_places(
    kube: Kube, namespace: str, redis_url: str, start_operator: OperatorFactory
) -> None:
    kube.create_secret(namespace, "hsds-db", {"url": f"postgresql://pirate:{CANARY}@db:5432/hsds"})
    kube.create_pool(namespace, pool_manifest("bare", redis_url))
    operator = start_operator()

    flagged = poll(
        lambda: (
            _status(kube, namespace, "bare", "ResultsNotDurable") == "True"
            and kube.condition(namespace, "bare", "ResultsNotDurable")
        ),
        20,
        "ResultsNotDurable on the bare pool",
    )
    assert flagged["reason"] == "PodLocalResults"
    assert "set spec.database" in flagged["message"]
    assert "set spec.outputs.persistentVolumeClaim" in flagged["message"]
    assert "spec.ephemeralResults: true" in flagged["message"]
    (warning,) = poll(lambda: kube.events(namespace, "ResultsNotDurable"), 10, "the Warning Event")
    assert warning["type"] == "Warning"
    assert "spec.database" in warning["message"]
    assert _status(kube, namespace, "bare", "Ready") == "True", "the pool still scales"
    assert "DATABASE_URL" not in _env(_pod(kube, namespace, "bare-reconciler"))

    kube.patch_pool(namespace, "bare", {"spec": {"database": DATABASE, "outputs": OUTPUTS}})
    poll(
        lambda: _status(kube, namespace, "bare", "ResultsNotDurable") == "False",
        20,
        "ResultsNotDurable cleared once the pool names a database and a claim",
    )
    assert (kube.condition(namespace, "bare", "ResultsNotDurable") or {})["reason"] == "Durable"
    poll(lambda: kube.events(namespace, "ResultsDurable"), 10, "the Normal Event of the fix")

    reconciler = poll(
        lambda: "DATABASE_URL" in _env(pod := _pod(kube, namespace, "bare-reconciler")) and pod,
        20,
        "the reconciler Deployment to get DATABASE_URL",
    )
    assert _env(reconciler)["DATABASE_URL"] == {"secretKeyRef": {"name": "hsds-db", "key": "url"}}
    recorder = _pod(kube, namespace, "bare-recorder")
    volumes = {volume["name"]: volume for volume in recorder["spec"]["volumes"]}
    (mount,) = [m for m in recorder["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == OUTPUT_DIR]
    assert volumes[mount["name"]]["persistentVolumeClaim"] == {"claimName": "pirate-outputs"}
    assert _env(recorder)["OUTPUT_DIR"] == OUTPUT_DIR
    assert "DATABASE_URL" not in _env(recorder)
    assert "DATABASE_URL" not in _env(_pod(kube, namespace, "bare-llm"))

    # The database URL's password is only ever in its Secret.
    holds(
        lambda: len(kube.events(namespace, "ResultsNotDurable")) == 1,
        3,
        "one Warning Event, not one per cycle",
    )
    seen = json.dumps(kube.get_pool(namespace, "bare")) + json.dumps(kube.events(namespace))
    seen += json.dumps(kube.deployments(namespace)) + operator.log_text()
    assert CANARY not in seen


def test_a_throwaway_pool_says_so_and_gets_no_warning(
    kube: Kube, namespace: str, redis_url: str, start_operator: OperatorFactory
) -> None:
    kube.create_pool(namespace, pool_manifest("scratch", redis_url, ephemeralResults=True))
    start_operator()

    condition = poll(
        lambda: kube.condition(namespace, "scratch", "ResultsNotDurable"), 20, "the condition to be reported"
    )
    assert (condition["status"], condition["reason"]) == ("False", "EphemeralResults")
    holds(lambda: not kube.events(namespace, "ResultsNotDurable"), 3, "no Warning for an opted-out pool")
