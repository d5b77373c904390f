"""Shared pydantic configuration of the ``PirateWorkerPool`` models.

Python attributes are snake_case; the Kubernetes object uses camelCase, produced by the alias
generator so the two can never drift. Spec models forbid unknown fields (a typo is an error, not a
silently ignored setting); status models ignore them so an older operator can read a newer status.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class SpecModel(BaseModel):
    """Base of every model under ``spec``: camelCase, immutable, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=False,
    )


class StatusModel(BaseModel):
    """Base of every model under ``status``: camelCase, immutable, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )
