"""Errors of the metric sources. Each message is one line, fit for a condition or an Event."""

from __future__ import annotations


class SourceError(Exception):
    """Base of every error ``pirate_operator.sources`` raises on purpose."""


class RedisUnavailable(SourceError):
    """Redis could not be reached or answered with an error: the observation is missing, not zero."""
