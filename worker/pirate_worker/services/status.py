"""A read-only snapshot of the pipeline for ``status``: never mutates RQ's registries."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Worker

from pirate_worker.contracts import keys
from pirate_worker.contracts.connection import as_text
from pirate_worker.contracts.queues import BUILTIN_ROLES
from pirate_worker.services.content_store import ContentStore
from pirate_worker.services.provider_state import ProviderStateStore
from pirate_worker.services.queueing import queue


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    queued: int
    in_flight: int
    stale: int
    scheduled: int
    finished: int
    failed: int


@dataclass
class PipelineSnapshot:
    queues: list[QueueSnapshot]
    workers: dict[str, int]
    provider: dict[str, Any]
    content_store: dict[str, int] | None
    totals: dict[str, int] = field(default_factory=dict)
    #: What the LLM stage cost and saved, fleet-wide since the stats began (see :func:`read_cost`).
    cost: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_queues(connection: Redis, names: tuple[str, ...]) -> list[QueueSnapshot]:
    """Counts per queue in one pipelined round trip (read-only: ZCARD/ZCOUNT, no cleanup)."""
    now = time.time()
    pipe = connection.pipeline(transaction=False)
    for name in names:
        q = queue(connection, name)
        pipe.llen(q.key)
        pipe.zcount(q.started_job_registry.key, f"({now}", "+inf")
        pipe.zcount(q.started_job_registry.key, "-inf", now)
        pipe.zcard(q.scheduled_job_registry.key)
        pipe.zcard(q.finished_job_registry.key)
        pipe.zcard(q.failed_job_registry.key)
    values = pipe.execute()
    return [QueueSnapshot(name, *values[i * 6 : i * 6 + 6]) for i, name in enumerate(names)]


def snapshot(
    connection: Redis,
    state: ProviderStateStore,
    store: ContentStore | None,
    queue_names: tuple[str, ...] = tuple(BUILTIN_ROLES),
) -> PipelineSnapshot:
    workers = Worker.all(connection=connection)
    states: dict[str, int] = {}
    for worker in workers:
        states[worker.get_state()] = states.get(worker.get_state(), 0) + 1
    provider = state.current(datetime.now(UTC))
    totals = {as_text(k): int(v) for k, v in connection.hgetall(keys.run_stats_key()).items()}
    content = asdict(store.stats()) if store is not None else None
    return PipelineSnapshot(
        queues=read_queues(connection, queue_names),
        workers=states,
        provider={
            "name": state.provider,
            "state": provider.condition.value,
            "retry_at": provider.retry_at.isoformat() if provider.retry_at else None,
            "message": provider.message,
        },
        content_store=content,
        totals=totals,
        cost=read_cost(totals, content),
    )


def read_cost(totals: dict[str, int], content_store: dict[str, int] | None) -> dict[str, Any]:
    """Provider calls by outcome, tokens per provider and kind, and calls the content store saved.

    ``totals`` is the run-stats hash: ``provider_calls:<outcome>`` and
    ``tokens:<provider>:<kind>`` fields, written by the llm job.
    """
    calls: dict[str, int] = {}
    tokens: dict[str, dict[str, int]] = {}
    for name, value in totals.items():
        if name.startswith("provider_calls:"):
            calls[name.removeprefix("provider_calls:")] = value
        elif name.startswith("tokens:"):
            provider, _, kind = name.removeprefix("tokens:").partition(":")
            tokens.setdefault(provider, {})[kind] = value
    avoided = 0
    if content_store is not None:
        avoided = content_store.get("enqueue_hits", 0) + content_store.get("processing_hits", 0)
    return {"provider_calls": calls, "tokens": tokens, "provider_calls_avoided": avoided}
