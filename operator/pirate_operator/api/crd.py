"""The ``PirateWorkerPool`` CustomResourceDefinition, generated from the pydantic models.

This is the single source of the CRD: the chart's ``crds/`` copy and ``manifests/`` are written from
:func:`crd_yaml` and a test fails when they drift, so the output must be byte-stable (sorted keys,
fixed formatting, no timestamps).
"""

from __future__ import annotations

from typing import Any, Final

import yaml

from pirate_operator.api.pool import (
    API_VERSION,
    CRD_NAME,
    GROUP,
    KIND,
    LIST_KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from pirate_operator.api.schema import structural_schema
from pirate_operator.api.spec import PoolSpec
from pirate_operator.api.status import PoolStatus

HEADER: Final = (
    "# PirateWorkerPool CRD, generated from pirate_operator.api by `pirate-workers crd`. Do not edit.\n"
)

_PRINTER_COLUMNS: Final[tuple[dict[str, str], ...]] = (
    {
        "name": "Provider",
        "type": "string",
        "jsonPath": ".status.provider.state",
        "description": "Provider auth/quota state.",
    },
    {
        "name": "LLM",
        "type": "integer",
        "jsonPath": ".status.roles.llm.replicas",
        "description": "Replicas of the llm role.",
    },
    {
        "name": "Reconciler",
        "type": "integer",
        "jsonPath": ".status.roles.reconciler.replicas",
        "description": "Replicas of the reconciler role.",
    },
    {
        "name": "Recorder",
        "type": "integer",
        "jsonPath": ".status.roles.recorder.replicas",
        "description": "Replicas of the recorder role.",
    },
    {
        "name": "Queued",
        "type": "integer",
        "jsonPath": ".status.queued",
        "description": "Jobs waiting in all the pool's queues.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def openapi_schema() -> dict[str, Any]:
    """The version's ``openAPIV3Schema``: the top-level object around spec and status."""
    return {
        "type": "object",
        "description": "A pool of Pantry Pirate Radio RQ workers, one Deployment per role, scaled from RQ "
        "demand and the LLM provider's quota state.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": f"Versioned schema of this object: {API_VERSION}.",
            },
            "kind": {"type": "string", "description": f"Kind of this object: {KIND}."},
            "metadata": {"type": "object"},
            "spec": structural_schema(PoolSpec),
            "status": structural_schema(PoolStatus),
        },
    }


def crd_manifest() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CRD (structural schema, status subresource, printer columns)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "pirate-workers"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": LIST_KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(column) for column in _PRINTER_COLUMNS],
                }
            ],
        },
    }


class _NoAliasDumper(yaml.SafeDumper):
    """Writes shared sub-objects out in full: anchors (``&id001``) would make diffs unreadable."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def crd_yaml() -> str:
    """:func:`crd_manifest` as YAML: keys sorted, block style, ASCII, stable across runs."""
    body = yaml.dump(
        crd_manifest(),
        Dumper=_NoAliasDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=False,
        width=100,
        indent=2,
    )
    return HEADER + body
