"""The LLM provider over simulated time: its auth/quota state as the workers write it to Redis,
and its rate limit (:class:`RateLimiter`) with the budget the workers write from it.

The trace says when the provider refuses calls; what the operator can *see* is the state document
a worker writes after a refusal (DESIGN §4). So the state here becomes blocked at the first
refused call, not at the window's start; reads as probing once ``retry_at`` (the window's end)
has passed; is cleared by the first success after that; and, like the real key (TTL
``retry_after + 60``), disappears 60 s after ``retry_at`` when nothing succeeded before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pirate_operator.simulate.trace import BlockedWindow, ProviderLimit
from pirate_worker.contracts.provider_state import ProviderCondition, ProviderState
from pirate_worker.contracts.rate_budget import WINDOW_S, Budget

#: Simulated second 0 as a wall-clock time (decide() wants timezone-aware datetimes).
EPOCH: Final = datetime(2025, 1, 1, tzinfo=UTC)
#: The state key outlives ``retry_at`` by this much (its TTL is ``retry_after + 60``).
KEY_GRACE_SECONDS: Final = 60.0


def at(seconds: float) -> datetime:
    """The wall-clock time of simulated second ``seconds``."""
    return EPOCH + timedelta(seconds=seconds)


@dataclass
class _Document:
    condition: ProviderCondition
    retry_at: float
    message: str


class ProviderModel:
    """The stored provider state: written on a refusal, cleared by a success, expired by TTL."""

    def __init__(self) -> None:
        self._document: _Document | None = None

    def refused(self, window: BlockedWindow, now: float) -> None:
        """A call at ``now`` was refused: store (or extend) the block until the window's end."""
        condition = ProviderCondition(window.kind)
        if self._document is None or self._document.retry_at < window.end:
            self._document = _Document(condition, window.end, f"{window.kind} (simulated)")

    def succeeded(self, now: float) -> None:
        """A call ending at ``now`` succeeded: it clears a block whose retry time has passed.

        A success while the block is still in force is a call that started before the window
        (the trace only refuses calls started inside it); it proves nothing about the quota now.
        """
        if self._document is not None and self._document.retry_at <= now:
            self._document = None

    def state(self, now: float) -> ProviderState:
        """What a reader of Redis concludes at ``now``."""
        document = self._document
        if document is None or now >= document.retry_at + KEY_GRACE_SECONDS:
            self._document = None
            return ProviderState(condition=ProviderCondition.OK)
        if now < document.retry_at:
            return ProviderState(
                condition=document.condition, retry_at=at(document.retry_at), message=document.message
            )
        return ProviderState(
            condition=ProviderCondition.PROBING, retry_at=at(document.retry_at), message=document.message
        )


class RateLimiter:
    """The provider's rate limit as a generic cell rate (a token bucket of ``burst_calls``).

    :meth:`admit` reserves the next call's start, as the workers' budget script reserves ahead:
    a call asked for at ``now`` starts at the returned time, never earlier, and no more than
    ``calls_per_minute`` calls start in any minute once the burst is spent.
    """

    def __init__(self, limit: ProviderLimit) -> None:
        self.limit = limit
        self._interval = WINDOW_S / limit.calls_per_minute
        self._tolerance = (limit.burst_calls - 1) * self._interval
        self._theoretical = 0.0
        self._settled_at: float | None = None
        self._call_s: float | None = None

    def admit(self, now: float) -> float:
        """Reserve a call asked for at ``now``; returns when the provider lets it start."""
        self._theoretical = max(self._theoretical, now)
        start = max(now, self._theoretical - self._tolerance)
        self._theoretical += self._interval
        return start

    def settled(self, now: float, call_s: float) -> None:
        """A call ended at ``now``: the workers write the budget (its newest settle and call time)."""
        self._settled_at = now
        self._call_s = call_s

    def budget(self) -> Budget | None:
        """The budget hash as the operator reads it; None before the first settle wrote it."""
        if self._settled_at is None:
            return None
        return Budget(
            limits={"requests": self.limit.calls_per_minute},
            used_per_call={"requests": 1.0},
            call_s=self._call_s,
            updated=at(self._settled_at).timestamp(),
        )
