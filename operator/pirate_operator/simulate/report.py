"""What a run cost and how long jobs waited: per role and in total, as JSON or as a table.

Definitions (the bench and the docs use these):

* **worker_seconds** — workers x seconds alive of every pod, from its creation (not its
  readiness) to its end (a draining pod counts until its last job finishes).
* **waits** — per completed job, its first enqueue to the start of the run that completed it
  (interruptions and refused starts add to it). Percentiles are nearest-rank.
* **blocked_worker_seconds** — worker-seconds of provider-gated roles inside the trace's blocked
  windows: what is paid for workers that cannot call the provider.
* **queued_at_block** — jobs queued on provider-gated roles at the instant a blocked window began
  (before that instant's arrivals), summed over the windows. Each of them waits until the window
  ends under any policy, so on an outage trace this count, left by the scaling *before* the
  outage, moves the p95 wait more than anything done during or after it.
* **scale_events** — replica changes of the role's Deployment, by any controller.
* **interrupted_jobs** — running jobs killed by a scale-in (grace period over) and re-enqueued.
* **refused_starts** — job starts refused by a blocked provider (the job goes back to the queue).
* **pending_jobs** — jobs still queued or running when the run stopped (0 unless it hit the cap).

With a provider rate limit, a gated role's wait runs to the start of its call: a job a worker took
but whose call waits for the limit is still waiting (the worker is busy, and paid, meanwhile).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from pirate_operator.simulate.cluster import Pod
from pirate_operator.simulate.engine import Outcome
from pirate_operator.simulate.trace import BlockedWindow


@dataclass(frozen=True)
class Figures:
    """The figures of one role, or of all roles together."""

    worker_seconds: float
    p50_wait_s: float | None
    p95_wait_s: float | None
    max_wait_s: float | None
    blocked_worker_seconds: float
    queued_at_block: int
    scale_events: int
    interrupted_jobs: int
    refused_starts: int
    jobs_done: int
    pending_jobs: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, times rounded to milliseconds."""
        return {
            "worker_seconds": _round(self.worker_seconds),
            "p50_wait_s": _round(self.p50_wait_s),
            "p95_wait_s": _round(self.p95_wait_s),
            "max_wait_s": _round(self.max_wait_s),
            "blocked_worker_seconds": _round(self.blocked_worker_seconds),
            "queued_at_block": self.queued_at_block,
            "scale_events": self.scale_events,
            "interrupted_jobs": self.interrupted_jobs,
            "refused_starts": self.refused_starts,
            "jobs_done": self.jobs_done,
            "pending_jobs": self.pending_jobs,
        }


@dataclass(frozen=True)
class Report:
    """The figures of one run."""

    trace: str
    policy: str
    seed: int
    simulated_s: float
    total: Figures
    roles: dict[str, Figures]
    #: The provider's rate limit in calls per minute, when the trace has one.
    limit: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document: the totals at the top level, per-role figures under ``roles``."""
        limit = {} if self.limit is None else {"provider_limit_calls_per_minute": self.limit}
        return {
            "policy": self.policy,
            "trace": self.trace,
            "seed": self.seed,
            **limit,
            "simulated_s": _round(self.simulated_s),
            **self.total.as_dict(),
            "roles": {name: figures.as_dict() for name, figures in self.roles.items()},
        }


def percentile(values: Sequence[float], percent: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``None`` when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def report(outcome: Outcome) -> Report:
    """Compute every figure of a run."""
    trace = outcome.trace
    roles: dict[str, Figures] = {}
    all_waits: list[float] = []
    for name, role in trace.roles.items():
        tally = outcome.tallies[name]
        pods = outcome.pods[name]
        windows = trace.blocked if role.gated_by_provider else ()
        all_waits += tally.waits
        roles[name] = Figures(
            worker_seconds=role.workers_per_pod * sum(_alive(pod, outcome.end) for pod in pods),
            p50_wait_s=percentile(tally.waits, 50),
            p95_wait_s=percentile(tally.waits, 95),
            max_wait_s=max(tally.waits, default=None),
            blocked_worker_seconds=role.workers_per_pod * _overlap(pods, windows, outcome.end),
            queued_at_block=tally.queued_at_block,
            scale_events=tally.scale_events,
            interrupted_jobs=tally.interrupted,
            refused_starts=tally.refused,
            jobs_done=tally.done,
            pending_jobs=outcome.pending[name],
        )
    total = Figures(
        worker_seconds=sum(figures.worker_seconds for figures in roles.values()),
        p50_wait_s=percentile(all_waits, 50),
        p95_wait_s=percentile(all_waits, 95),
        max_wait_s=max(all_waits, default=None),
        blocked_worker_seconds=sum(figures.blocked_worker_seconds for figures in roles.values()),
        queued_at_block=sum(figures.queued_at_block for figures in roles.values()),
        scale_events=sum(figures.scale_events for figures in roles.values()),
        interrupted_jobs=sum(figures.interrupted_jobs for figures in roles.values()),
        refused_starts=sum(figures.refused_starts for figures in roles.values()),
        jobs_done=sum(figures.jobs_done for figures in roles.values()),
        pending_jobs=sum(figures.pending_jobs for figures in roles.values()),
    )
    limit = trace.limit.calls_per_minute if trace.limit is not None else None
    return Report(trace.name, outcome.policy, outcome.seed, outcome.end, total, roles, limit)


def print_table(result: Report, console: Console) -> None:
    """The report as a rich table, one row per role and a total row."""
    table = Table(
        title=f"{result.trace} — policy {result.policy} (seed {result.seed}, {result.simulated_s:,.0f} s)"
    )
    for header in (
        "role",
        "worker-s",
        "p50 wait s",
        "p95 wait s",
        "max wait s",
        "blocked worker-s",
        "queued at block",
        "scale events",
        "interrupted",
        "refused",
        "done",
        "pending",
    ):
        table.add_column(header, justify="left" if header == "role" else "right")
    rows = [*result.roles.items(), ("total", result.total)]
    for index, (name, figures) in enumerate(rows):
        table.add_row(
            name,
            f"{figures.worker_seconds:,.0f}",
            _seconds(figures.p50_wait_s),
            _seconds(figures.p95_wait_s),
            _seconds(figures.max_wait_s),
            f"{figures.blocked_worker_seconds:,.0f}",
            str(figures.queued_at_block),
            str(figures.scale_events),
            str(figures.interrupted_jobs),
            str(figures.refused_starts),
            str(figures.jobs_done),
            str(figures.pending_jobs),
            end_section=index == len(rows) - 2,
        )
    console.print(table)


def _alive(pod: Pod, end: float) -> float:
    ended = pod.ended_at if pod.ended_at is not None else end
    return max(0.0, min(ended, end) - pod.created_at)


def _overlap(pods: Iterable[Pod], windows: Iterable[BlockedWindow], end: float) -> float:
    spans = [(window.start, window.end) for window in windows]
    total = 0.0
    for pod in pods:
        ended = min(pod.ended_at if pod.ended_at is not None else end, end)
        for start, stop in spans:
            total += max(0.0, min(ended, stop) - max(pod.created_at, start))
    return total


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
