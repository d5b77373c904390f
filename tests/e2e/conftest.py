"""e2e fixtures: one control plane per session (KUBECONFIG if it answers, else hack/kube), the
PirateWorkerPool CRD applied from ``crd_yaml()``'s source, a namespace per test, and the operator
and fake kubelet as real processes/threads scoped to the test.

In CI (``CI=true``) a missing control plane fails the run; elsewhere the e2e tests are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_service
from tests.support.kube import (
    ControlPlane,
    ControlPlaneUnavailable,
    Kube,
    OperatorProcess,
    start_control_plane,
)
from tests.support.kubelet import FakeKubelet


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    try:
        plane = start_control_plane()
    except ControlPlaneUnavailable as exc:
        missing_service(str(exc))
        raise  # unreachable: missing_service fails or skips
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    client = Kube(control_plane.kubeconfig)
    client.apply_pool_crd()
    yield client
    client.close()


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"e2e-{name}-{id(request) % 10_000:04d}"
    kube.create_namespace(name)
    yield name
    kube.purge_namespace(name)


OperatorFactory = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start ``pirate-workers operator -n <namespace>`` (waits for /healthz); all stopped at the end."""
    started: list[OperatorProcess] = []

    def start(wait: bool = True, **env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        process = OperatorProcess(control_plane.kubeconfig, namespace, log, **env)
        started.append(process)
        return process.wait_healthy() if wait else process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def kubelet(control_plane: ControlPlane, kube: Kube, namespace: str, tmp_path: Path) -> Iterator[FakeKubelet]:
    if kube.has_real_nodes():
        # Not a missing part: on kind the cluster runs the pods itself, so the harness must not
        # play kubelet. This project's CI uses hack/kube (no kubelets) and always runs these tests.
        pytest.skip(  # real kubelets present, never the case in this repo's CI
            "the fake kubelet needs a control plane without kubelets (hack/kube); this one runs pods itself"
        )
    fake = FakeKubelet(kube, namespace, tmp_path / "pods").start()
    yield fake
    fake.stop()
    assert not fake.errors, fake.errors
