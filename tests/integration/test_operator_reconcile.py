"""A pool's polling cycle (``PoolLoop``) against the real redis-server and an in-memory apiserver.

The Kubernetes side is a recording double of ``KubeApi`` (same methods, plain dicts), so every
write the cycle makes can be counted; the e2e tier runs the same loop against a real apiserver.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis import Redis
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from pirate_operator.api import ConditionStatus, ConditionType, PoolStatus
from pirate_operator.kube import KubeError, deployment_view
from pirate_operator.kube.names import POD_DELETION_COST_ANNOTATION
from pirate_operator.metrics import OperatorMetrics
from pirate_operator.reconcile import OperatorContext, PoolLoop
from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import StateDocument
from pirate_worker.runtime.embedded_redis import free_port

pytestmark = pytest.mark.integration

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


class FakeKube:
    """Deployments, scale, pods, secrets, events and pool status, kept in dicts."""

    def __init__(self) -> None:
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], str] = {}
        self.events: list[dict[str, Any]] = []
        self.status_patches: list[dict[str, Any]] = []
        self.scale_calls: list[tuple[str, int]] = []
        self.calls: list[str] = []
        self.fail_scale = False
        self._versions = itertools.count(100)

    def _stamp(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["resourceVersion"] = str(next(self._versions))
        body["metadata"].setdefault("uid", f"uid-{body['metadata']['name']}")
        return copy.deepcopy(body)

    def list_deployments(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(d) for d in self.deployments.values()]

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        self.deployments[body["metadata"]["name"]] = copy.deepcopy(body)
        return self._stamp(self.deployments[body["metadata"]["name"]])

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch")
        live = self.deployments[name]
        live["metadata"].update(patch["metadata"])
        live["spec"].update(patch["spec"])
        return self._stamp(live)

    def delete_deployment(self, namespace: str, name: str, uid: str) -> None:
        self.calls.append("delete")
        del self.deployments[name]

    def patch_scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        self.calls.append("scale")
        if self.fail_scale:
            raise KubeError("scale deployment: boom (HTTP 500)", 500)
        self.scale_calls.append((name, replicas))
        live = self.deployments[name]
        live["spec"]["replicas"] = replicas
        stamped = self._stamp(live)
        return {"metadata": stamped["metadata"], "spec": {"replicas": replicas}}

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for p in self.pods.values()]

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch pod")
        pod = self.pods[name]
        pod["metadata"].setdefault("annotations", {}).update(patch["metadata"]["annotations"])
        return copy.deepcopy(pod)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.calls.append("secret")
        return self.secrets[(name, key)]

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.events.append(body)
        return body

    def patch_pool_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.status_patches.append(patch)
        return patch

    def close(self) -> None:
        pass

    def live(self) -> dict[str, Any]:
        views = [deployment_view(copy.deepcopy(d)) for d in self.deployments.values()]
        return {view.role: view for view in views}

    def reasons(self) -> list[str]:
        return [event["reason"] for event in self.events]


class Harness:
    """One pool, its loop and a controllable clock."""

    def __init__(self, kube: FakeKube, redis_url: str, **spec: Any) -> None:
        self.kube = kube
        self.now = T0
        self.metrics = OperatorMetrics()
        self.ctx = OperatorContext(kube=kube, metrics=self.metrics, clock=lambda: self.now)  # type: ignore[arg-type]
        self.body: dict[str, Any] = {
            "apiVersion": "pirateradio.dev/v1alpha1",
            "kind": "PirateWorkerPool",
            "metadata": {"name": "pantry", "namespace": "food", "uid": "pool-uid", "generation": 1},
            "spec": {
                "image": "example/worker:1",
                "redis": {"url": redis_url},
                "provider": {"name": "anthropic", "apiKeySecretRef": {"name": "k", "key": "a"}},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
                **spec,
            },
        }
        self.loop = PoolLoop(self.ctx, "food", "pantry")
        self._last_spec: str | None = None

    def cycle(self, advance: float = 2.0) -> float:
        # The apiserver bumps metadata.generation on every spec change; the tests edit dicts.
        spec = json.dumps(self.body["spec"], sort_keys=True)
        if spec != self._last_spec:
            self.body["metadata"]["generation"] += self._last_spec is not None
            self._last_spec = spec
        interval = asyncio.run(self.loop.cycle(self.body, self.kube.live()))
        if self.kube.status_patches:
            self.body["status"] = _merge(
                self.body.get("status") or {}, self.kube.status_patches[-1]["status"]
            )
        self.now += timedelta(seconds=advance)
        return interval

    def replicas(self, role: str) -> int:
        return int(self.kube.deployments[f"pantry-{role}"]["spec"]["replicas"])

    def status(self) -> PoolStatus:
        return PoolStatus.model_validate(self.body.get("status") or {})

    def condition(self, kind: ConditionType) -> tuple[ConditionStatus, str] | None:
        found = self.status().condition(kind)
        return (found.status, found.reason) if found else None


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch, as the apiserver applies it."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict):
            previous = merged.get(key)
            merged[key] = _merge(previous if isinstance(previous, dict) else {}, value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def pool(kube: FakeKube, redis_url: str) -> Iterator[Harness]:
    harness = Harness(kube, redis_url)
    yield harness
    harness.loop.close()


def _enqueue(redis: Redis, queue: str, count: int) -> None:
    q = Queue(queue, connection=redis, serializer=JSONSerializer)
    for _ in range(count):
        q.enqueue("time.sleep", 0, job_timeout=60)


def test_first_cycle_creates_the_deployments_at_min_replicas_and_reports_ready(pool: Harness) -> None:
    assert pool.cycle() == 2.0
    assert set(pool.kube.deployments) == {"pantry-llm", "pantry-reconciler", "pantry-recorder"}
    assert pool.replicas("llm") == 0
    assert pool.condition(ConditionType.READY) == (ConditionStatus.TRUE, "Reconciled")
    assert pool.condition(ConditionType.REDIS_REACHABLE) == (ConditionStatus.TRUE, "Connected")
    assert pool.status().observed_generation == 1
    assert pool.kube.reasons().count("DeploymentCreated") == 3


def test_an_unchanged_cycle_writes_nothing(pool: Harness) -> None:
    pool.cycle()
    writes = (len(pool.kube.status_patches), len(pool.kube.calls), len(pool.kube.events))
    for _ in range(3):
        pool.cycle()
    assert (len(pool.kube.status_patches), len(pool.kube.calls), len(pool.kube.events)) == writes


def test_demand_scales_up_with_one_event_then_back_down_after_the_window(pool: Harness, redis: Redis) -> None:
    pool.cycle()
    _enqueue(redis, "llm", 8)
    pool.cycle()
    assert pool.replicas("llm") == 4  # 8 jobs / 2 workers per pod
    assert pool.kube.reasons().count("ScaledUp") == 1
    assert pool.status().roles["llm"].queued == 8
    assert pool.status().queued == 8
    redis.delete(Queue("llm", connection=redis).key)
    pool.cycle()
    assert pool.replicas("llm") == 4  # held by the 10 s scale-down window
    for _ in range(6):
        pool.cycle()
    assert pool.replicas("llm") == 0
    assert pool.kube.reasons().count("ScaledDown") == 1
    families = {m.name: m for m in pool.metrics.registry.collect()}
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for s in families["pirate_operator_scale_events"].samples
    }
    assert (
        samples[
            (
                "pirate_operator_scale_events_total",
                (("direction", "up"), ("namespace", "food"), ("pool", "pantry"), ("role", "llm")),
            )
        ]
        == 1
    )


def test_mean_job_time_is_exported_once_workers_have_run_jobs(pool: Harness, redis: Redis) -> None:
    def exported() -> float | None:
        return pool.metrics.registry.get_sample_value(
            "pirate_operator_mean_job_seconds", {"namespace": "food", "pool": "pantry", "role": "llm"}
        )

    pool.cycle()
    assert exported() is None, "no worker, no job run: unknown, not 0"
    worker = Worker([Queue("llm", connection=redis)], name="pantry-llm-1-aaaaa.llm.0.1", connection=redis)
    worker.register_birth()
    worker.set_state("idle")
    redis.hset(worker.key, mapping={"successful_job_count": 4, "total_working_time": 10.0})
    pool.cycle()
    assert exported() == pytest.approx(2.5)
    worker.register_death()
    pool.cycle()
    assert exported() is None


def test_redis_down_holds_replicas_sets_fallback_once_and_recovers(
    kube: FakeKube, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pirate_operator")
    dead = Harness(kube, f"redis://127.0.0.1:{free_port()}/0")
    dead.cycle()
    kube.deployments["pantry-llm"]["spec"]["replicas"] = 3
    for _ in range(3):
        dead.cycle()
    assert dead.replicas("llm") == 3
    assert dead.condition(ConditionType.FALLBACK) == (ConditionStatus.TRUE, "RedisUnreachable")
    assert dead.condition(ConditionType.READY) == (ConditionStatus.FALSE, "RedisUnreachable")
    assert kube.reasons().count("RedisUnreachable") == 1
    assert "fallback" in dead.status().roles["llm"].reason
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and " redis: " in r.getMessage()]
    assert len(warnings) == 1  # a persisting failure is logged when it starts, not every cycle
    # Redis back: normal decisions again, one recovery Event
    url = redis.connection_pool.connection_kwargs
    dead.body["spec"]["redis"]["url"] = f"redis://{url['host']}:{url['port']}/0"
    dead.cycle()
    assert dead.condition(ConditionType.FALLBACK) == (ConditionStatus.FALSE, "QueueDataAvailable")
    assert kube.reasons().count("RedisReachable") == 1
    assert any("redis: working again" in r.getMessage() for r in caplog.records)
    dead.loop.close()


def _block(redis: Redis, seconds: int, key: str = "quota") -> None:
    now = datetime.now(UTC)
    doc = StateDocument(
        status="quota_exceeded",
        message="429",
        timestamp=now,
        retry_at=now + timedelta(seconds=seconds),
        retry_after=seconds,
    )
    name = keys.quota_status_key("anthropic") if key == "quota" else keys.auth_status_key("anthropic")
    redis.set(name, doc.to_json(), ex=seconds + 60)


def test_blocked_provider_caps_llm_but_not_the_other_roles(pool: Harness, redis: Redis) -> None:
    pool.now = datetime.now(UTC)  # provider documents carry real times
    pool.cycle(advance=0)
    _enqueue(redis, "llm", 6)
    _enqueue(redis, "reconciler", 2)
    _block(redis, 600)
    pool.cycle(advance=0)
    assert pool.replicas("llm") == 0
    assert pool.replicas("reconciler") == 2
    assert pool.condition(ConditionType.PROVIDER_BLOCKED) == (ConditionStatus.TRUE, "QuotaExceeded")
    assert pool.status().provider is not None
    assert pool.status().provider.state == "quota_exceeded"
    assert "ProviderQuotaExceeded" in pool.kube.reasons()
    # success recorded: keys deleted -> full scaling
    redis.delete(keys.quota_status_key("anthropic"))
    pool.cycle(advance=0)
    assert pool.replicas("llm") == 3
    assert pool.condition(ConditionType.PROVIDER_BLOCKED) == (ConditionStatus.FALSE, "ProviderOK")
    assert "ProviderRecovered" in pool.kube.reasons()


def test_paused_pool_is_not_scaled_and_dry_run_reports_without_scaling(pool: Harness, redis: Redis) -> None:
    pool.cycle()
    _enqueue(redis, "llm", 8)
    pool.body["spec"]["paused"] = True
    pool.cycle()
    assert pool.replicas("llm") == 0
    assert pool.condition(ConditionType.PAUSED) == (ConditionStatus.TRUE, "Paused")
    assert pool.status().roles["llm"].queued == 8
    pool.body["spec"]["paused"] = False
    pool.body["spec"]["dryRun"] = True
    pool.cycle()
    pool.cycle()
    assert pool.replicas("llm") == 0
    llm = pool.status().roles["llm"]
    assert llm.desired_replicas == 4
    assert llm.reason.startswith("dry run: would set 4")
    assert llm.scale_events == ()
    assert pool.kube.reasons().count("DryRunScale") == 1
    assert pool.kube.scale_calls == []


def test_invalid_pool_gets_a_condition_and_one_event_and_never_touches_deployments(pool: Harness) -> None:
    pool.body["spec"]["roles"] = {"llm": {"minReplicas": 5, "maxReplicas": 2}}
    for _ in range(3):
        pool.cycle()
    assert pool.kube.deployments == {}
    assert pool.condition(ConditionType.INVALID_SPEC) == (ConditionStatus.TRUE, "InvalidSpec")
    assert pool.condition(ConditionType.READY) == (ConditionStatus.FALSE, "InvalidSpec")
    assert pool.kube.reasons() == ["InvalidSpec"]
    assert (
        "minReplicas 5 is above maxReplicas 2" in pool.status().condition(ConditionType.INVALID_SPEC).message
    )  # type: ignore[union-attr]
    pool.body["spec"]["roles"] = {"llm": {"minReplicas": 1, "maxReplicas": 2}}
    pool.cycle()
    assert pool.condition(ConditionType.INVALID_SPEC) == (ConditionStatus.FALSE, "Valid")
    assert pool.replicas("llm") == 1
    assert "SpecValid" in pool.kube.reasons()


def test_a_removed_role_loses_its_deployment_and_its_status(pool: Harness) -> None:
    pool.cycle()
    pool.body["spec"]["roles"] = {"llm": {}, "reconciler": {}}
    pool.cycle()
    assert set(pool.kube.deployments) == {"pantry-llm", "pantry-reconciler"}
    assert pool.kube.status_patches[-1]["status"]["roles"]["recorder"] is None


def test_spec_change_patches_the_template_but_never_the_replicas(pool: Harness, redis: Redis) -> None:
    pool.cycle()
    _enqueue(redis, "llm", 4)
    pool.cycle()
    assert pool.replicas("llm") == 2
    pool.body["spec"]["image"] = "example/worker:2"
    pool.cycle()
    live = pool.kube.deployments["pantry-llm"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "example/worker:2"
    assert live["spec"]["replicas"] == 2
    assert pool.kube.calls.count("patch") == 3  # one per role


def test_a_failed_scale_keeps_the_memory_and_reports_a_kubernetes_error(pool: Harness, redis: Redis) -> None:
    pool.cycle()
    pool.kube.fail_scale = True
    _enqueue(redis, "llm", 4)
    pool.cycle()
    assert pool.condition(ConditionType.READY) == (ConditionStatus.FALSE, "KubernetesError")
    assert pool.status().roles["llm"].scale_events == ()
    assert pool.kube.reasons().count("KubernetesError") == 1
    pool.kube.fail_scale = False
    pool.cycle()
    assert pool.replicas("llm") == 2
    assert pool.condition(ConditionType.READY) == (ConditionStatus.TRUE, "Reconciled")


def test_redis_url_from_a_secret_is_read_once(kube: FakeKube, redis_url: str, redis: Redis) -> None:
    kube.secrets[("redis", "url")] = redis_url
    harness = Harness(kube, redis_url)
    harness.body["spec"]["redis"] = {"urlSecretRef": {"name": "redis", "key": "url"}}
    for _ in range(3):
        harness.cycle()
    assert kube.calls.count("secret") == 1
    assert harness.condition(ConditionType.REDIS_REACHABLE) == (ConditionStatus.TRUE, "Connected")
    harness.loop.close()


def test_scale_in_marks_idle_pods_cheaper_and_keeps_the_busy_ones(pool: Harness, redis: Redis) -> None:
    pool.body["spec"]["roles"] = {"reconciler": {"maxReplicas": 4}}
    pool.cycle()
    _enqueue(redis, "reconciler", 3)
    pool.cycle()
    assert pool.replicas("reconciler") == 3
    for name in ("pod-a", "pod-b", "pod-c"):
        pool.kube.pods[name] = {"metadata": {"name": name}}
    redis.delete(Queue("reconciler", connection=redis).key)
    worker = Worker([Queue("reconciler", connection=redis)], name="pod-b.reconciler.0.11", connection=redis)
    worker.register_birth()
    worker.set_state("busy")
    for _ in range(8):
        pool.cycle()
    assert pool.replicas("reconciler") == 1  # drain floor: one busy worker, one pod
    costs = {
        name: pod["metadata"]["annotations"][POD_DELETION_COST_ANNOTATION]
        for name, pod in pool.kube.pods.items()
    }
    assert costs == {"pod-a": "0", "pod-b": "1000", "pod-c": "0"}
    assert "drain floor" in pool.status().roles["reconciler"].reason


def test_a_restarted_loop_changes_nothing(
    pool: Harness, redis: Redis, kube: FakeKube, redis_url: str
) -> None:
    pool.cycle()
    _enqueue(redis, "llm", 8)
    pool.cycle()
    redis.delete(Queue("llm", connection=redis).key)
    pool.cycle()
    before = (len(kube.scale_calls), pool.replicas("llm"), len(kube.events))
    restarted = Harness(kube, redis_url)
    restarted.body["status"] = pool.body["status"]
    restarted.now = pool.now
    restarted.cycle()
    assert (len(kube.scale_calls), restarted.replicas("llm"), len(kube.events)) == before
    restarted.loop.close()


def _decide(
    current: int,
    demand: int,
    busy: int = 0,
    remembered: int | None = None,
    mean_job_seconds: float | None = None,
    **role: Any,
) -> Any:
    from pirate_operator.api import EffectiveRole, Recommendation, RoleMemory
    from pirate_operator.scaling import RoleObservation, decide
    from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState

    state = ProviderState(
        condition=role.pop("provider", ProviderCondition.OK), retry_at=T0 + timedelta(hours=1)
    )
    effective = EffectiveRole(name="llm", queues=("llm",), gated_by_provider=True, **role)
    observed = RoleObservation(queued=demand, busy_workers=busy, mean_job_seconds=mean_job_seconds)
    past = (
        () if remembered is None else (Recommendation(time=T0 - timedelta(seconds=5), replicas=remembered),)
    )
    memory = RoleMemory(recommendations=past)
    return decide(effective, memory, observed, state, T0, current_replicas=current)


@pytest.mark.parametrize(
    ("decision", "category"),
    [
        (lambda: _decide(0, 3), "demand"),
        (lambda: _decide(0, 30, max_replicas=20), "rate_limit"),
        (lambda: _decide(0, 30, max_replicas=2), "bounds"),
        (lambda: _decide(2, 30, provider="quota_exceeded"), "provider_gate"),
        (lambda: _decide(3, 0, busy=2, provider="quota_exceeded"), "drain_floor"),
        (lambda: _decide(10, 11, max_replicas=20), "tolerance"),
        (lambda: _decide(3, 0, remembered=3), "stabilization"),
        (lambda: _decide(3, 6, max_replicas=20, mean_job_seconds=1.0), "start_up_horizon"),
    ],
)
def test_decision_categories_follow_decide_reasons(decision: Any, category: str) -> None:
    from pirate_operator.reconcile.report import Mode, decision_category

    made = decision()
    assert decision_category(made, Mode.ACTIVE) == category, made.reason


def test_an_unchanged_decision_under_steady_demand_refreshes_status_only_every_ten_seconds(
    pool: Harness, redis: Redis
) -> None:
    pool.cycle()
    _enqueue(redis, "llm", 8)
    pool.cycle()  # scale-up: written at once
    written = len(pool.kube.status_patches)
    # counts move (a retry scheduled an hour out), the decision does not: no write yet
    Queue("llm", connection=redis, serializer=JSONSerializer).enqueue_in(timedelta(hours=1), "time.sleep", 0)
    for _ in range(4):
        pool.cycle()
    assert len(pool.kube.status_patches) == written
    pool.cycle()  # 10 s after the last write
    assert len(pool.kube.status_patches) == written + 1
    assert pool.status().roles["llm"].scheduled == 1
    # the recommendation changes (demand gone; replicas held by the window): written in its cycle,
    # with the exact time of the last recommendation of 4, which the window is measured from
    redis.delete(Queue("llm", connection=redis).key)
    last_busy_cycle = pool.now - timedelta(seconds=2)
    pool.cycle()
    assert len(pool.kube.status_patches) == written + 2
    llm = pool.status().roles["llm"]
    assert (llm.replicas, llm.recommendations[-1].replicas) == (4, 4)
    assert llm.recommendations[-1].time == last_busy_cycle
    assert "stabilization" in llm.reason
