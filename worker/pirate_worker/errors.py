"""Errors of the worker package. User-facing ones carry a one-line message."""

from __future__ import annotations


class PirateError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PirateError):
    """Invalid environment or settings; the message names the variable."""


class InputError(PirateError):
    """A user-supplied file or payload is malformed; the message says where and why."""


class ServiceUnavailable(PirateError):
    """A backing service (Redis, the database) cannot be reached."""


class PermanentJobError(PirateError):
    """Retrying the job cannot help (malformed payload, unalignable record, invalid HSDS).

    The runtime fails such a job at once with this message as the reason, keeping its retry
    budget for errors that may pass.
    """
