"""Errors of the Kubernetes adapter; messages are one line, fit for a condition or an Event."""

from __future__ import annotations


class KubeError(Exception):
    """A Kubernetes API call failed (``status`` is the HTTP status, None when none was received)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    """The object (or the key within it) does not exist."""


class Conflict(KubeError):
    """The object already exists or changed under us (HTTP 409)."""
