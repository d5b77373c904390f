"""Errors of the API layer. Each carries a one-line message fit for a condition or an Event."""

from __future__ import annotations


class ApiError(Exception):
    """Base of every error ``pirate_operator.api`` raises on purpose."""


class InvalidPoolError(ApiError):
    """A ``PirateWorkerPool`` object that cannot be acted on; ``problems`` lists each reason."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        summary = "; ".join(self.problems)
        super().__init__(f"invalid PirateWorkerPool ({count} problem{'s' if count != 1 else ''}): {summary}")
