"""Kubernetes Events about a pool (core/v1, readable by ``kubectl describe`` on every version)."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from pirate_operator.api import API_VERSION, KIND

COMPONENT: Final = "pirate-workers-operator"
#: The apiserver rejects longer messages.
MAX_MESSAGE: Final = 1024


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


def build_event(
    pool_metadata: Mapping[str, Any], kind: EventType, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """An Event about the pool described by ``pool_metadata`` (name, namespace, uid)."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = str(pool_metadata.get("name", ""))
    text = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": pool_metadata.get("namespace")},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": name,
            "namespace": pool_metadata.get("namespace"),
            "uid": pool_metadata.get("uid"),
        },
        "type": kind.value,
        "reason": reason,
        "message": text,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
