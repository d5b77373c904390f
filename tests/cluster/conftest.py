"""Cluster tier fixtures: one real node per session (tests/support/cluster.py), a namespace per test.

In CI (``CI=true``) a node that cannot start fails the run; elsewhere the tier is skipped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import missing_service
from tests.support.cluster import Cluster, ClusterUnavailable, busybox_image, start_cluster


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    """The node, for this package only: it is stopped before the other tiers run (1 GiB, a core's tick)."""
    try:
        node = start_cluster()
    except ClusterUnavailable as exc:
        missing_service(f"cluster: {exc}")
        raise  # unreachable: missing_service fails or skips
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="package")
def busybox(cluster: Cluster) -> str:
    """The tier's smallest image (Debian's static busybox), present in the node's daemon."""
    try:
        return busybox_image(cluster)
    except ClusterUnavailable as exc:
        missing_service(f"cluster: {exc}")
        raise


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"c-{name}-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
