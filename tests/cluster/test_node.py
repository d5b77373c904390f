"""The node's qualities the chart relies on, proven with real pods (Debian's static busybox).

Each test fails for a real regression of the node: a pod that cannot start non-root and read-only,
DNS or kube-proxy not routing a Service name (or a pod's own Service back to it), the apiserver
unreachable from pods, PVCs that do not bind or that a non-root pod cannot write (fsGroup), logs,
exec or port-forward broken, a deletion that kills at once or never honours the grace period.
"""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from tests.support.cluster import Cluster, PodWatch, kubectl_binary
from tests.support.kube import poll

pytestmark = pytest.mark.cluster

UID = 10001


def pod(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    """A pod running ``sh -c script`` as uid 10001 on a read-only root filesystem, /tmp an emptyDir."""
    labels = spec.pop("labels", {"app": name})
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", script],
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *spec.pop("mounts", [])],
    }
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "securityContext": {"runAsUser": UID, "runAsNonRoot": True, **spec.pop("security", {})},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}, *spec.pop("volumes", [])],
            "terminationGracePeriodSeconds": 5,
            **spec,
        },
    }


def web_server(name: str, image: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """busybox httpd on 8080 answering with the pod's hostname; Ready once it listens."""
    script = "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
    probe = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    return pod(
        name, image, script, labels=labels or {"app": name}, container={"readinessProbe": probe}, **spec
    )


def service(name: str, selector: dict[str, str], **spec: Any) -> dict[str, Any]:
    ports = [{"port": 80, "targetPort": 8080}]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": selector, "ports": ports, **spec}}  # fmt: skip


def sh(cluster: Cluster, namespace: str, pod_name: str, script: str, check: bool = True) -> str:
    """``kubectl exec POD -- sh -c SCRIPT``: its stdout (and stderr), failing when it fails and ``check``."""
    result = cluster.kubectl("exec", "-n", namespace, pod_name, "--", "sh", "-c", script, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"exec in {pod_name}: {script!r} failed: {result.stdout}{result.stderr}")
    return result.stdout + result.stderr


def test_the_node_is_ready_and_runs_on_the_projects_dockerd(cluster: Cluster) -> None:
    node = cluster.get("node", cluster.node_name)
    assert node is not None
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert not node["spec"].get("taints"), node["spec"]["taints"]
    runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"]
    assert runtime == f"docker://{cluster.docker('version', '--format', '{{.Server.Version}}').strip()}"


def test_a_pod_runs_ready_as_non_root_on_a_read_only_root(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    readiness = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    manifest = pod(
        "plain", busybox, "touch /tmp/ready && exec sleep 3600", container={"readinessProbe": readiness}
    )
    created = time.monotonic()
    cluster.apply(manifest, namespace=namespace)
    cluster.wait_for_pods_ready(namespace, "app=plain", timeout=60)
    assert time.monotonic() - created < 30, "create -> Ready took longer than 30 s on an idle node"

    assert sh(cluster, namespace, "plain", "id -u").strip() == str(UID)
    refused = sh(cluster, namespace, "plain", "touch /written 2>&1; echo rc=$?")
    assert "Read-only file system" in refused and "rc=1" in refused


def test_services_resolve_by_name_and_route_through_kube_proxy(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    cluster.apply(
        web_server("server", busybox, labels={"app": "echo"}),
        service("echo", {"app": "echo"}),
        pod("client", busybox, "exec sleep 3600"),
        namespace=namespace,
    )
    cluster.wait_for_pods_ready(namespace, "app in (echo, client)", count=2, timeout=60)

    # kube-proxy programs a new Service within about a second (its minimum sync period); until
    # then the ClusterIP is refused (hack/cluster keeps Service IPs on the machine).
    poll(
        lambda: (
            sh(cluster, namespace, "client", "timeout 10 wget -qO- http://echo/", check=False) == "server\n"
        ),
        15,
        "echo",
    )
    # The short name and the longer forms, through the pod's DNS search path and the Service VIP.
    for name in ("echo", f"echo.{namespace}", f"echo.{namespace}.svc", f"echo.{namespace}.svc.cluster.local"):
        assert sh(cluster, namespace, "client", f"timeout 10 wget -qO- http://{name}/").strip() == "server", (
            name
        )
    # Hairpin: the server reaching itself through its own Service (DNAT back to the pod it came from).
    assert sh(cluster, namespace, "server", "timeout 10 wget -qO- http://echo/").strip() == "server"
    # The apiserver through the `kubernetes` Service (what the operator pod does).
    version = sh(
        cluster,
        namespace,
        "client",
        "timeout 10 wget --no-check-certificate -qO- https://kubernetes.default.svc/version",
    )
    assert '"gitVersion": "v1.20.2"' in version
    # A ClusterIP no Service has is refused on the node, never routed off the machine.
    stray = sh(cluster, namespace, "client", "timeout 10 wget -qO- http://10.111.222.111/ 2>&1", check=False)
    assert "Connection refused" in stray, stray
    missing = sh(
        cluster, namespace, "client", f"nslookup nothing.{namespace}.svc.cluster.local 2>&1", check=False
    )
    assert "NXDOMAIN" in missing


def test_headless_service_names_its_pods(cluster: Cluster, namespace: str, busybox: str) -> None:
    """What a StatefulSet's pods are reached by: ``pod.governing-service.ns.svc.cluster.local``."""
    cluster.apply(
        web_server("member", busybox, labels={"app": "members"}, hostname="member-0", subdomain="members"),
        service("members", {"app": "members"}, clusterIP="None"),
        pod("client", busybox, "exec sleep 3600"),
        namespace=namespace,
    )
    ready = cluster.wait_for_pods_ready(namespace, "app in (members, client)", count=2, timeout=60)
    member_ip = next(p["status"]["podIP"] for p in ready if p["metadata"]["name"] == "member")

    def resolves(name: str) -> bool:
        return member_ip in sh(cluster, namespace, "client", f"nslookup {name} 2>&1", check=False)

    poll(lambda: resolves(f"members.{namespace}.svc.cluster.local"), 15, "the headless Service's record")
    assert resolves(f"member-0.members.{namespace}.svc.cluster.local")
    assert (
        sh(cluster, namespace, "client", "timeout 10 wget -qO- http://member-0.members:8080/").strip()
        == "member-0"
    )


def test_a_claim_binds_and_fs_group_lets_non_root_pods_write_and_read_it(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    request = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Mi"}}}
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": request,
    }
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
              "mounts": [{"name": "data", "mountPath": "/data"}]}  # fmt: skip
    # What PostgreSQL does with its PGDATA: a subdirectory of its own, 0700.
    write = "echo persisted > /data/hello && mkdir -m 0700 /data/pgdata && echo secret > /data/pgdata/file"
    on_root_mismatch = {"fsGroup": UID, "fsGroupChangePolicy": "OnRootMismatch"}
    cluster.apply(
        claim,
        pod("writer", busybox, write, restartPolicy="Never", security=on_root_mismatch, **volume),
        namespace=namespace,
    )
    cluster.wait_for_pod_phase(namespace, "writer", "Succeeded", timeout=60)
    bound = cluster.get("pvc", "data", namespace)
    assert bound is not None and bound["status"]["phase"] == "Bound"
    assert bound["spec"]["storageClassName"] == "standard"  # the default class hack/cluster creates

    # Later, another uid in the same fsGroup reads it; OnRootMismatch leaves PGDATA's 0700 alone.
    read = "cat /data/hello; stat -c '%a %u' /data/pgdata; stat -c '%a %g' /data"
    cluster.apply(
        pod(
            "reader",
            busybox,
            read,
            restartPolicy="Never",
            security={**on_root_mismatch, "runAsUser": UID + 1},
            **volume,
        ),
        namespace=namespace,
    )
    cluster.wait_for_pod_phase(namespace, "reader", "Succeeded", timeout=60)
    lines = cluster.kubectl("logs", "-n", namespace, "reader").stdout.split("\n")
    assert lines[:3] == ["persisted", f"700 {UID}", f"2770 {UID}"], lines

    # The default policy (Always) is recursive, as kubelet does for a CSI volume: group rwx + setgid.
    cluster.apply(
        pod(
            "recursive",
            busybox,
            "stat -c %a /data/pgdata",
            restartPolicy="Never",
            security={"fsGroup": UID},
            **volume,
        ),
        namespace=namespace,
    )
    cluster.wait_for_pod_phase(namespace, "recursive", "Succeeded", timeout=60)
    assert cluster.kubectl("logs", "-n", namespace, "recursive").stdout.strip() == "2770"


def test_logs_exec_and_port_forward(cluster: Cluster, namespace: str, busybox: str) -> None:
    script = (
        "echo started-as-$(id -u); mkdir -p /tmp/www && hostname > /tmp/www/index.html;"
        " exec httpd -f -p 8080 -h /tmp/www"
    )
    probe = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    cluster.apply(pod("talker", busybox, script, container={"readinessProbe": probe}), namespace=namespace)
    cluster.wait_for_pods_ready(namespace, "app=talker", timeout=60)

    assert cluster.kubectl("logs", "-n", namespace, "talker").stdout.strip() == f"started-as-{UID}"
    assert sh(cluster, namespace, "talker", "cat /etc/hostname").strip() == "talker"
    echoed = cluster.kubectl("exec", "-i", "-n", namespace, "talker", "--", "cat", input="through stdin\n")
    assert echoed.stdout == "through stdin\n"

    forward = subprocess.Popen(
        [*_kubectl(cluster), "port-forward", "-n", namespace, "pod/talker", ":8080"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        first = forward.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> 8080"
        match = re.search(r"127\.0\.0\.1:(\d+)", first)
        assert match, first
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/", timeout=10) as response:
            assert response.read().decode().strip() == "talker"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_deletion_sends_sigterm_and_honours_the_grace_period(
    cluster: Cluster, namespace: str, busybox: str
) -> None:
    loop = "echo started; while :; do sleep 0.1; done"
    handles = f"trap 'echo got SIGTERM; sleep 1; exit 0' TERM; {loop}"
    ignores = f"trap '' TERM; {loop}"
    cluster.apply(
        pod("handles", busybox, handles, terminationGracePeriodSeconds=30),
        pod("ignores", busybox, ignores, terminationGracePeriodSeconds=3),
        namespace=namespace,
    )
    cluster.wait_for_pods_ready(namespace, "app in (handles, ignores)", count=2, timeout=60)
    follower = subprocess.Popen(
        [*_kubectl(cluster), "logs", "-f", "-n", namespace, "handles"], stdout=subprocess.PIPE, text=True
    )
    assert follower.stdout is not None
    assert follower.stdout.readline() == "started\n"  # attached (and running) before the deletion
    watch = PodWatch(cluster, namespace)
    try:
        deleted = time.monotonic()
        cluster.kubectl("delete", "pod", "-n", namespace, "handles", "ignores", "--wait=false")
        exits = poll(lambda: len(watch.container_exits()) == 2 and watch.container_exits(), 40, "both exits")
    finally:
        watch.close()
    # Only what the container printed while it ran: the stream may lose the tail when the kubelet
    # removes the container (dockershim's `docker logs --follow`).
    said = follower.communicate(timeout=10)[0]
    assert said.startswith("got SIGTERM\n"), said

    (handled_at, handled_code), (killed_at, killed_code) = exits["handles"], exits["ignores"]
    # SIGTERM reached the shell, whose trap ended it (exit 0, not 137) long before its 30 s grace.
    assert handled_code == 0 and handled_at - deleted < 10, exits
    # The one that ignores SIGTERM got its 3 s, then SIGKILL (137).
    assert killed_code == 137 and 3 <= killed_at - deleted < 10, exits
    poll(lambda: not cluster.pods(namespace), 60, "both pods to be removed", interval=0.5)


def _kubectl(cluster: Cluster) -> list[str]:
    return [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}"]
