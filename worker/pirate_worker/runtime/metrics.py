"""Prometheus metrics of a worker pod, counted in the supervisor (the children send events).

Counting in the parent matters: counters incremented in a child die with it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger(__name__)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter(
            "pirate_jobs", "Jobs handled by outcome", ["queue", "outcome"], registry=self.registry
        )
        self.duration = Histogram(
            "pirate_job_duration_seconds",
            "Job run time",
            ["queue"],
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.dedup_hits = Counter(
            "pirate_dedup_hits",
            "Content store hits that avoided a provider call",
            ["stage"],
            registry=self.registry,
        )
        self.provider_calls = Counter(
            "pirate_provider_calls",
            "LLM provider calls by outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "pirate_provider_tokens",
            "Tokens used by kind (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.avoided_calls = Gauge(
            "pirate_provider_calls_avoided",
            "Provider calls the content store avoided, fleet-wide, by stage (read from the store)",
            ["stage"],
            registry=self.registry,
        )
        self.restarts = Counter(
            "pirate_worker_restarts", "Worker processes restarted after dying", registry=self.registry
        )
        self.recovered_jobs = Counter(
            "pirate_recovered_jobs", "Jobs of dead workers requeued or failed", registry=self.registry
        )
        self.workers = Gauge("pirate_worker_processes", "Live worker processes", registry=self.registry)
        self.paused = Gauge(
            "pirate_workers_paused", "Worker processes paused by a provider block", registry=self.registry
        )

    def track_avoided_calls(self, read_stats: Callable[[], Any]) -> None:
        """Report the content store's hit counters (shared by all pods) at every scrape."""
        for stage in ("enqueue", "processing"):
            self.avoided_calls.labels(stage).set_function(functools.partial(_read_hits, read_stats, stage))

    def apply(self, kind: str, labels: dict[str, Any]) -> None:
        """Count one event sent by a child."""
        if kind == "job":
            self.jobs.labels(labels["queue"], labels["outcome"]).inc()
            self.duration.labels(labels["queue"]).observe(float(labels.get("duration", 0.0)))
        elif kind == "dedup_hit":
            self.dedup_hits.labels(labels["stage"]).inc()
        elif kind == "provider_call":
            self.provider_calls.labels(labels["provider"], labels["outcome"]).inc()
            for token_kind, count in (labels.get("usage") or {}).items():
                self.tokens.labels(labels["provider"], token_kind).inc(count)
        elif kind == "paused":
            self.paused.inc() if labels["paused"] else self.paused.dec()


def _read_hits(read_stats: Callable[[], Any], stage: str) -> float:
    try:
        return float(getattr(read_stats(), f"{stage}_hits"))
    except Exception:
        # A scrape must not fail because Redis blinked; NaN says "unknown".
        log.debug("content store stats unavailable", exc_info=True)
        return float("nan")
