"""The chart as users run it: `helm install` on a real node with the images of `make images`.

One release for the module, driven in the order a user meets it: install and `helm test`, the
bundled services locked down and asking for passwords, the examples enqueued from inside the
cluster and worked off by pods the operator scales up from zero and back, the results still there
after the pods, Redis and PostgreSQL are gone; then the failures a node really has (a pod deleted
mid-job, a container killed, a quota block), `helm upgrade`, password rotation and `helm
uninstall`. Nothing here plays kubelet: every pod is started by the node from the built images.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import missing_service
from tests.support.cluster import Cluster, PodWatch
from tests.support.images import Docker, ImageBuildError, build_images
from tests.support.kube import holds, poll
from tests.support.release import (
    OUTPUTS,
    POOL,
    POSTGRESQL,
    POSTGRESQL_AUTH,
    REDIS,
    REDIS_AUTH,
    RELEASE,
    ROOT,
    WORKER_UID,
    Release,
    install,
    node_values,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
#: The examples' records (56) less the 6 duplicates the content hash catches.
UNIQUE_RECORDS = 50
#: A custom role on a queue of its own: plain rq workers running `time.sleep`, the slow job a
#: node failure can catch in flight (built-in roles finish the offline provider's jobs in ms).
SLOW = {"queues": ["slow"], "maxReplicas": 1, "jobTimeoutSeconds": 60}
ENQUEUE_SLOW = """
import sys, os
from redis import Redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer
queue = Queue("slow", connection=Redis.from_url(os.environ["REDIS_URL"]), serializer=JSONSerializer)
job = queue.enqueue("time.sleep", {seconds}, job_id="{job_id}", retry=Retry(max=2), job_timeout=60)
print("enqueued", job.id)
"""


@pytest.fixture(scope="module")
def images(cluster: Cluster) -> dict[str, str]:
    docker = Docker(cluster.docker_host)
    if not docker.answers():
        missing_service(f"the node's dockerd does not answer on {cluster.docker_host}")
    try:
        return build_images(docker)
    except ImageBuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def release(cluster: Cluster, images: dict[str, str]) -> Iterator[Release]:
    namespace = f"chart-{uuid.uuid4().hex[:6]}"
    cluster.create_namespace(namespace)
    values = node_values(roles={"llm": {}, "reconciler": {}, "recorder": {}, "slow": SLOW})
    try:
        handle = install(cluster, namespace, values)
    except Exception:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        raise
    yield handle
    handle.helm.uninstall(RELEASE, timeout=180, ignore_not_found=True)
    handle.helm.close()
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _running_pod(release: Release, component: str) -> dict[str, Any]:
    pods = list(release.cluster.pods(release.namespace, f"app.kubernetes.io/component={component}"))
    running = [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    assert running, f"no running {component} pod"
    return running[0]


def _container_id(pod: dict[str, Any]) -> str:
    (status,) = pod["status"]["containerStatuses"]
    return str(status["containerID"]).removeprefix("docker://")


# --- install ---------------------------------------------------------------------------------


def assert_locked_down(release: Release, pod: dict[str, Any], uid: int) -> None:
    """The container really runs as ``uid``, cannot write its root filesystem, has no capabilities."""
    name = pod["metadata"]["name"]
    assert release.exec(f"pod/{name}", "id", "-u").strip() == str(uid), name
    refused = release.exec(f"pod/{name}", "touch", "/probe", check=False)
    assert "Read-only file system" in refused, f"{name} could write its root filesystem"
    config = json.loads(release.cluster.docker("inspect", _container_id(pod)))[0]["HostConfig"]
    assert config["ReadonlyRootfs"] is True, name
    assert "ALL" in (config["CapDrop"] or []), name
    assert config["Privileged"] is False, name


def test_every_container_runs_non_root_on_a_read_only_root_without_capabilities(release: Release) -> None:
    for component, uid in {"operator": WORKER_UID, "redis": 999, "postgresql": 999}.items():
        assert_locked_down(release, _running_pod(release, component), uid)


def test_helm_test_runs_its_pod_against_the_operator(release: Release) -> None:
    result = release.helm.test(RELEASE, timeout=120, logs=True)
    assert "/healthz 200" in json.dumps(result), result


def test_redis_refuses_a_client_without_the_password(release: Release) -> None:
    service = f"{REDIS}.{release.namespace}.svc.cluster.local"
    script = "; ".join(
        f"redis-cli -h {service} {command}" for command in ("PING", "KEYS '*'", "LLEN rq:queue:llm")
    )
    answer = release.run([], command=["sh", "-c", script], image_role="redis")
    lines = [line for line in answer.splitlines() if line.strip()]
    assert len(lines) == 3 and all("NOAUTH" in line for line in lines), answer
    password = release.secret(REDIS_AUTH, "password")
    authenticated = release.run(
        [],
        command=["redis-cli", "-h", service, "-a", password, "--no-auth-warning", "PING"],
        image_role="redis",
    )
    assert authenticated.strip() == "PONG"


def test_the_pool_is_durable_and_says_so(release: Release) -> None:
    condition = poll(
        lambda: release.condition("ResultsNotDurable"), 60, "the pool's ResultsNotDurable condition"
    )
    assert (condition["status"], condition["reason"]) == ("False", "Durable")
    assert release.replicas("llm") == release.replicas("reconciler") == release.replicas("recorder") == 0


# --- the pipeline ------------------------------------------------------------------------------


def test_examples_enqueued_in_the_cluster_are_worked_off_by_pods_scaled_from_zero(release: Release) -> None:
    cluster, namespace = release.cluster, release.namespace
    cluster.kubectl(
        "create", "configmap", "examples", "-n", namespace, *(f"--from-file={path}" for path in EXAMPLES)
    )
    peak: dict[str, int] = {}

    def scaled_up(replicas: dict[str, int]) -> bool:
        for role, count in replicas.items():
            peak[role] = max(peak.get(role, 0), count)
        return all(peak[role] > 0 for role in ("llm", "reconciler", "recorder"))

    output = release.run(
        ["enqueue", "/examples"],
        env={"REDIS_URL": (REDIS_AUTH, "url")},
        volumes=[{"name": "examples", "configMap": {"name": "examples"}}],
        mounts=[{"name": "examples", "mountPath": "/examples"}],
    )
    assert f"{UNIQUE_RECORDS} enqueued, 6 deduplicated" in output, output
    release.wait_for_roles(scaled_up, "llm, reconciler and recorder scaled up from zero")

    for queue in ("llm", "reconciler", "recorder"):
        poll(
            lambda q=queue: release.count("finished", q) == UNIQUE_RECORDS,
            180,
            f"{UNIQUE_RECORDS} finished {queue} jobs",
            interval=1,
        )
        assert release.count("failed", queue) == 0
    release.wait_for_roles(lambda r: not any(r.values()), "the pool back to zero", timeout=180)
    poll(
        lambda: not release.role_pods("recorder") and not release.role_pods("reconciler"),
        60,
        "the worker pods gone",
    )
    assert_results_kept(release)


def assert_results_kept(release: Release) -> None:
    """All 50 records in PostgreSQL and on the recorder's claim (read on the node's disk)."""
    stats = release.db_stats()
    tables = stats.get("tables", stats)
    assert tables["location"] == UNIQUE_RECORDS, stats
    files = release.claim_dir(OUTPUTS)
    recorded = list(files.glob("daily/*/scrapers/*/*.json"))
    assert len(recorded) == UNIQUE_RECORDS
    summaries = list(files.glob("daily/*/summary.json"))
    assert sum(json.loads(path.read_text())["total_jobs"] for path in summaries) == UNIQUE_RECORDS


PARK_JOBS = """
import os
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
queue = Queue("parked", connection=Redis.from_url(os.environ["REDIS_URL"]), serializer=JSONSerializer)
for index in range(20):
    queue.enqueue("time.sleep", 0, job_id=f"parked-{index}")
"""


def test_results_survive_the_database_and_redis_pods(release: Release) -> None:
    # Jobs parked on a queue no role serves: Redis's append-only file on its claim must keep them.
    release.python(PARK_JOBS)
    assert release.queued("parked") == 20
    for statefulset in (REDIS, POSTGRESQL):
        old = _running_pod(release, statefulset.rsplit("-", 1)[-1])["metadata"]["uid"]
        release.cluster.kubectl(
            "delete", "pod", "-n", release.namespace, f"{statefulset}-0", "--wait=true", timeout=120
        )
        poll(
            lambda s=statefulset, o=old: (
                (p := release.get("pod", f"{s}-0")) is not None
                and p["metadata"]["uid"] != o
                and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
                )
            ),
            120,
            f"{statefulset}-0 back and Ready",
            interval=0.5,
        )
    assert release.queued("parked") == 20
    assert release.job_status("parked-7") == "queued"
    assert_results_kept(release)


# --- failures on the node -------------------------------------------------------------------


def _enqueue_slow(release: Release, job_id: str, seconds: int) -> None:
    release.python(ENQUEUE_SLOW.format(seconds=seconds, job_id=job_id))


def _slow_pod_running(release: Release, job_id: str) -> dict[str, Any]:
    """The pod whose worker runs the job, once it has started (worker names are ``<pod>.<role>...``)."""
    poll(lambda: release.job_status(job_id) == "started", 90, f"{job_id} started", interval=0.5)
    worker = release.redis_cli("HGET", f"rq:job:{job_id}", "worker_name").strip('"')
    pod = release.get("pod", worker.split(".")[0])
    assert pod is not None, f"no pod for worker {worker}"
    return pod


def test_a_worker_pod_deleted_mid_job_finishes_it_first(release: Release) -> None:
    watch = PodWatch(release.cluster, release.namespace)
    try:
        _enqueue_slow(release, "warm-1", 12)
        pod = _slow_pod_running(release, "warm-1")
        name = pod["metadata"]["name"]
        release.cluster.kubectl("delete", "pod", "-n", release.namespace, name, "--wait=false")
        poll(
            lambda: release.job_status("warm-1") == "finished",
            90,
            "the job to finish in the deleted pod",
            interval=0.5,
        )
        poll(lambda: release.get("pod", name) is None, 90, "the deleted pod gone once its job finished")
        exit_seen = watch.container_exits("worker").get(name)
    finally:
        watch.close()
    # Finished on its first run, in the pod it started in: a run cut short would have used a retry.
    assert release.redis_cli("HGET", "rq:job:warm-1", "retries_left").strip('"') == "2"
    assert release.count("failed", "slow") == 0
    # A warm shutdown registers every worker's death (RQ keeps the key 60 s with a `death` field)
    # and takes it out of the worker set; a killed worker stays registered until its TTL.
    registered = release.redis_cli("SMEMBERS", f"rq:workers:{SLOW['queues'][0]}")
    assert f"rq:worker:{name}." not in registered
    keys = [
        line.split()[-1].strip('"') for line in release.redis_cli("KEYS", f"rq:worker:{name}.*").splitlines()
    ]
    for key in [key for key in keys if key.startswith("rq:worker:")]:
        assert release.redis_cli("HEXISTS", key, "death").split()[-1] == "1", f"{key} died without saying so"
    # The kubelet does not always report the last status of a pod it is deleting; when it does,
    # the supervisor's exit code is 0.
    assert exit_seen is None or exit_seen[1] == 0


def test_a_killed_worker_container_is_restarted_and_its_job_is_not_lost(release: Release) -> None:
    _enqueue_slow(release, "kill-1", 8)
    pod = _slow_pod_running(release, "kill-1")
    release.cluster.docker("kill", _container_id(pod))
    restarted = poll(
        lambda: (
            (p := release.get("pod", pod["metadata"]["name"])) is not None
            and p["status"]["containerStatuses"][0]["restartCount"] >= 1
            and p
        ),
        60,
        "the kubelet to restart the killed container",
    )
    assert restarted["metadata"]["uid"] == pod["metadata"]["uid"], "the same pod, its container restarted"
    poll(
        lambda: release.job_status("kill-1") == "finished",
        240,
        "the killed job to run again and finish",
        interval=1,
    )
    assert release.count("failed", "slow") == 0


def test_helm_upgrade_keeps_the_operators_replicas_the_data_and_the_passwords(release: Release) -> None:
    passwords = {name: release.secret(name, "password") for name in (REDIS_AUTH, POSTGRESQL_AUTH)}
    # An llm pod that stays (minReplicas 1) and may stay while the provider is blocked.
    pool = {**release.values["pool"], "quota": {"replicasWhenBlocked": 1, "probeReplicas": 1}}
    pool["roles"] = {**pool["roles"], "llm": {"minReplicas": 1}}
    release.upgrade({**release.values, "pool": pool})
    release.wait_for_roles(
        lambda r: r == {"llm": 1, "reconciler": 0, "recorder": 0}, "the llm role at its new minReplicas"
    )
    poll(lambda: release.replicas("slow") == 0, 60, "the slow role idle at zero")
    release.cluster.wait_for_pods_ready(
        release.namespace, f"app.kubernetes.io/component=llm,pirateradio.dev/pool={POOL}"
    )

    # A second upgrade that changes only the operator: nothing the operator scaled may move.
    before = {role: release.replicas(role) for role in ("llm", "reconciler", "recorder", "slow")}
    release.upgrade({**release.values, "operator": {**release.values["operator"], "logLevel": "DEBUG"}})
    holds(
        lambda: {role: release.replicas(role) for role in before} == before,
        5,
        f"the worker replicas {before} through helm upgrade",
    )
    release.cluster.wait_for_pods_ready(release.namespace, "app.kubernetes.io/component=operator")
    assert {name: release.secret(name, "password") for name in passwords} == passwords
    assert_results_kept(release)


def test_liveness_keeps_a_quota_blocked_worker_alive(release: Release) -> None:
    (pod,) = [p for p in release.role_pods("llm") if not p["metadata"].get("deletionTimestamp")]
    name = pod["metadata"]["name"]
    assert_locked_down(release, pod, WORKER_UID)
    now = time.time()
    state = {"status": "quota_exceeded", "message": "cluster tier: blocked on purpose", "timestamp": now,
             "retry_at": now + 900, "retry_after": 900}  # fmt: skip
    release.redis_cli("SET", "rules:quota:status", json.dumps(state), "EX", "960")
    try:
        poll(
            lambda: (
                release.condition("ProviderBlocked")
                and release.condition("ProviderBlocked")["status"] == "True"
            ),
            30,
            "ProviderBlocked",
        )
        health = poll(
            lambda: "paused" in (answer := release.exec(f"pod/{name}", "python", "-c", HEALTH)) and answer,
            30,
            "the worker's /health to say paused",
        )
        assert json.loads(health)["status"] == "paused"
        # Liveness: 15 s initial delay, every 15 s, 4 failures: a failing /health restarts within 75 s.
        holds(
            lambda: (
                (p := release.get("pod", name)) is not None
                and p["status"]["containerStatuses"][0]["restartCount"] == 0
                and p["status"]["containerStatuses"][0]["ready"]
            ),
            80,
            "the paused worker alive, unrestarted and Ready",
            interval=2,
        )
        assert release.replicas("llm") == 1, "held at quota.replicasWhenBlocked"
    finally:
        release.redis_cli("DEL", "rules:quota:status")


HEALTH = (
    "import urllib.request; "
    "print(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=5).read().decode())"
)


def _record_file(name: str) -> dict[str, Any]:
    """A scraper output with one record nobody has seen: new content for the content store."""
    template = json.loads((ROOT / "examples" / "county_map_api.json").read_text())
    record = {**template["raw_data"][0], "title": f"Rotation Check Pantry {name}"}
    record["address"] = {**record["address"], "line1": f"{100 + len(name)} {name.title()} St"}
    record["geo"] = {"lat": 40.0 + len(name) / 100, "lng": -100.0 - len(name) / 100}
    return {**template, "scraper_id": f"rotation_{name}", "total_records": 1, "raw_data": [record]}


def _enqueue_new_record(release: Release, name: str) -> None:
    document = json.dumps(_record_file(name))
    script = f'printf "%s" "$DOC" > /tmp/{name}.json && exec pirate-workers enqueue /tmp/{name}.json'
    output = release.run(
        [], command=["sh", "-c", script], env={"REDIS_URL": (REDIS_AUTH, "url"), "DOC": document}
    )
    assert "1 enqueued" in output, output


def test_rotating_the_passwords_as_the_readme_says(release: Release) -> None:
    namespace, kubectl = release.namespace, release.cluster.kubectl
    finished = release.count("finished", "reconciler")
    locations = release.db_stats()["tables"]["location"]

    old = release.secret(REDIS_AUTH, "password")
    new = uuid.uuid4().hex
    patch = {"stringData": {"password": new, "url": f"redis://:{new}@{REDIS}:6379/0"}}
    kubectl("patch", "secret", REDIS_AUTH, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))
    kubectl("rollout", "restart", f"statefulset/{REDIS}", "-n", namespace)
    kubectl("rollout", "status", f"statefulset/{REDIS}", "-n", namespace, "--timeout=120s", timeout=130)
    kubectl("rollout", "restart", "deployment", "-l", f"pirateradio.dev/pool={POOL}", "-n", namespace)
    service = f"{REDIS}.{namespace}.svc.cluster.local"
    refused = release.run(
        [], command=["redis-cli", "-h", service, "-a", old, "--no-auth-warning", "PING"], image_role="redis"
    )
    assert "WRONGPASS" in refused or "invalid" in refused.lower(), refused

    pg_old = release.secret(POSTGRESQL_AUTH, "password")
    pg_new = uuid.uuid4().hex
    release.exec(
        f"statefulset/{POSTGRESQL}",
        "psql",
        "-U",
        "pirate",
        "-d",
        "hsds",
        "-c",
        f"ALTER USER pirate PASSWORD '{pg_new}'",
    )
    patch = {
        "stringData": {"password": pg_new, "url": f"postgresql://pirate:{pg_new}@{POSTGRESQL}:5432/hsds"}
    }
    kubectl("patch", "secret", POSTGRESQL_AUTH, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))
    kubectl("rollout", "restart", f"deployment/{POOL}-reconciler", "-n", namespace)
    assert pg_old != pg_new

    # The operator re-reads the URL once Redis refuses the old one; the workers start with the new.
    _enqueue_new_record(release, "after")
    poll(
        lambda: release.count("finished", "reconciler") == finished + 1,
        180,
        "the new record reconciled",
        interval=1,
    )
    poll(
        lambda: (c := release.condition("RedisReachable")) is not None and c["status"] == "True",
        60,
        "the operator on the new password",
    )
    assert release.db_stats()["tables"]["location"] == locations + 1


def test_passwords_appear_only_in_their_secrets(release: Release) -> None:
    passwords = [release.secret(name, "password") for name in (REDIS_AUTH, POSTGRESQL_AUTH)]
    seen = json.dumps(release.pool()) + json.dumps(release.events())
    seen += json.dumps(release.helm.get_values(RELEASE)) + json.dumps(
        release.helm.get_values(RELEASE, all_values=True)
    )
    for kind in ("deployments", "statefulsets", "configmaps", "pods"):
        seen += release.cluster.kubectl("get", kind, "-n", release.namespace, "-o", "json").stdout
    for pod in release.cluster.pods(release.namespace):
        for container in pod["spec"]["containers"]:
            seen += release.logs(pod["metadata"]["name"], container["name"])
    leaked = [index for index, password in enumerate(passwords) if password in seen]
    assert leaked == [], "a password left its Secret"


def test_uninstall_runs_the_hook_and_leaves_only_the_data(release: Release) -> None:
    watch = PodWatch(release.cluster, release.namespace)
    try:
        release.helm.uninstall(RELEASE, timeout=180)
        hooks = dict(watch.container_exits("delete-pool").items())
    finally:
        watch.close()
    assert [code for _, code in hooks.values()] == [0], f"the pre-delete hook's pod: {hooks}"
    assert release.get("pirateworkerpool", POOL) is None, "the hook released the pool"

    def left() -> dict[str, list[str]]:
        kinds = "deployments,statefulsets,services,networkpolicies,roles,rolebindings,serviceaccounts"
        kinds += ",jobs,pvc,secrets"
        items = json.loads(
            release.cluster.kubectl("get", kinds, "-n", release.namespace, "-o", "json").stdout
        )["items"]
        found: dict[str, list[str]] = {}
        for item in items:
            name = item["metadata"]["name"]
            if item["kind"] == "ServiceAccount" and name == "default":
                continue
            if item["kind"] == "Secret" and item.get("type") == "kubernetes.io/service-account-token":
                continue
            found.setdefault(item["kind"], []).append(name)
        return {kind: sorted(names) for kind, names in found.items()}

    stays = {
        "PersistentVolumeClaim": sorted([f"data-{POSTGRESQL}-0", f"data-{REDIS}-0", OUTPUTS]),
        "Secret": sorted([POSTGRESQL_AUTH, REDIS_AUTH]),
    }
    poll(lambda: left() == stays, 120, "only what the README says stays", interval=1)
    poll(
        lambda: (
            not [
                p
                for p in release.cluster.pods(release.namespace)
                if p["metadata"]["labels"].get("app") != "pirate-test-run"
            ]
        ),
        120,
        "every pod gone",
    )
