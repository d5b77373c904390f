"""The provider's rate-limit budget that the llm fleet shares (DESIGN §4), and how to read it.

One Redis hash per provider, :func:`~pirate_worker.contracts.keys.rate_budget_key`. The workers
write it (one script reserves before a call, one settles after it from the answer's rate-limit
headers); the operator only reads it, to cap a gated role at the pods the provider can keep busy.

Fields, per dimension ``d`` of :data:`DIMENSIONS` the provider reports a limit for:

* ``d:limit`` — the provider's limit per minute, from the newest answer's headers;
* ``d:level`` — units available now; negative when calls have reserved ahead of the refill;
* ``d:ts`` — when ``d:level`` was last brought up to date (seconds since the epoch, Redis clock);
* ``d:used`` — units one call really used, a moving average over settled calls (requests: 1).

and ``call_s`` (seconds one call takes, a moving average) and ``updated`` (seconds since the epoch
of the newest settle). A limit refills continuously at ``limit / 60`` per second: both providers
state their limits per minute, and Anthropic documents a token bucket refilled continuously.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

#: What a provider may limit: calls, all tokens, input tokens and output tokens.
DIMENSIONS: Final = ("requests", "tokens", "input_tokens", "output_tokens")
#: Seconds a limit's full amount takes to refill.
WINDOW_S: Final = 60.0


@dataclass(frozen=True)
class Budget:
    """What a reader sees in the hash: limits per minute, use per call, call time."""

    limits: dict[str, float] = field(default_factory=dict)
    used_per_call: dict[str, float] = field(default_factory=dict)
    call_s: float | None = None
    updated: float | None = None

    def calls_per_second(self) -> float | None:
        """The calls per second the tightest limit sustains, or None while nothing is known."""
        rates = [
            (limit / WINDOW_S) / self.used_per_call[name]
            for name, limit in self.limits.items()
            if self.used_per_call.get(name, 0.0) > 0.0
        ]
        return min(rates) if rates else None

    def calls_in_flight(self) -> float | None:
        """Calls in flight that keep the provider at its limit (Little's law), or None."""
        rate = self.calls_per_second()
        if rate is None or not self.call_s:
            return None
        return rate * self.call_s

    def age_s(self, now_epoch_s: float) -> float:
        return math.inf if self.updated is None else max(now_epoch_s - self.updated, 0.0)


def parse_budget(raw: Mapping[str | bytes, str | bytes]) -> Budget | None:
    """The budget in an ``HGETALL`` answer; None when the hash is empty. Unreadable fields are skipped."""
    fields = {_text(k): _number(v) for k, v in raw.items()}
    if not fields:
        return None
    limits: dict[str, float] = {}
    used: dict[str, float] = {}
    for name in DIMENSIONS:
        limit = fields.get(f"{name}:limit")
        if limit is not None and limit > 0:
            limits[name] = limit
        per_call = fields.get(f"{name}:used")
        if per_call is not None and per_call > 0:
            used[name] = per_call
    return Budget(
        limits=limits, used_per_call=used, call_s=fields.get("call_s"), updated=fields.get("updated")
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: str | bytes) -> float | None:
    try:
        number = float(_text(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None
