"""The trivial job the throughput benchmark runs: the runtime's overhead is all that is measured."""

from __future__ import annotations


def echo(value: int) -> int:
    return value
