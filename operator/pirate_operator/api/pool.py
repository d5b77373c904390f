"""The ``PirateWorkerPool`` resource: identity of the kind and the whole-object model."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from pirate_operator.api.spec import PoolSpec
from pirate_operator.api.status import PoolStatus

GROUP: Final = "pirateradio.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "pirateradio.dev/v1alpha1"  # GROUP/VERSION, spelt out for the Literal below
KIND: Final = "PirateWorkerPool"
LIST_KIND: Final = "PirateWorkerPoolList"
PLURAL: Final = "pirateworkerpools"
SINGULAR: Final = "pirateworkerpool"
SHORT_NAMES: Final = ("pwp",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"


class PirateWorkerPool(BaseModel):
    """A whole ``PirateWorkerPool`` object as the apiserver returns it.

    ``metadata`` stays a plain mapping: it belongs to Kubernetes, and the operator only reads
    ``name``, ``namespace``, ``uid`` and ``generation`` from it.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    api_version: Literal["pirateradio.dev/v1alpha1"] = Field(default=API_VERSION, alias="apiVersion")
    kind: Literal["PirateWorkerPool"] = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: PoolSpec
    status: PoolStatus = Field(default_factory=PoolStatus)

    @property
    def name(self) -> str:
        """``metadata.name``, or an empty string for objects not yet named."""
        found = self.metadata.get("name")
        return found if isinstance(found, str) else ""

    @property
    def generation(self) -> int | None:
        """``metadata.generation``: bumped by the apiserver on every spec change."""
        found = self.metadata.get("generation")
        return found if isinstance(found, int) else None
