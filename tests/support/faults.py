"""Fault-injection harness: the whole pipeline as real processes on a dedicated AOF redis-server.

Shared by ``tests/integration/test_faults.py`` (CI-sized runs) and ``bench/faults.py`` (the full
N). Everything here observes through Redis (RQ's own registries, read without cleanup), the
recorder's files and the reconciler's SQLite database; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from pirate_worker.contracts.connection import connect
from pirate_worker.contracts.queues import (
    LLM_QUEUE,
    LLM_RETRY_INTERVALS,
    RECONCILER_QUEUE,
    RECONCILER_RETRY_INTERVALS,
    RECORDER_QUEUE,
    reconcile_job_id,
    record_job_id,
)
from pirate_worker.llm.base import GenerationConfig
from pirate_worker.llm.prompt import build_messages
from pirate_worker.llm.rules import RulesProvider
from pirate_worker.runtime.embedded_redis import EmbeddedRedis
from pirate_worker.services.content_store import RedisContentStore
from pirate_worker.services.reconciler import plan_rows
from pirate_worker.services.scraper_files import ScrapedRecord, canonical_content
from pirate_worker.services.submission import submit_records
from tests.support.processes import WorkerProcess, wait_for

SCRAPER_ID = "fault_drill"
QUEUES = (LLM_QUEUE, RECONCILER_QUEUE, RECORDER_QUEUE)
#: ``appendfsync always``: an acknowledged write survives a SIGKILL of the server, so a restart
#: loses nothing the workers were told was stored (``everysec`` may drop the last second).
AOF_ARGS = ("--appendfsync", "always")
TERMINAL = frozenset({"finished", "failed"})


def synthetic_records(count: int, scraper_id: str = SCRAPER_ID) -> list[ScrapedRecord]:
    """``count`` distinct listings (distinct names, addresses, phones), as a scraper file holds them."""
    records = []
    for index in range(count):
        item = {
            "org_name": f"Fault Drill Pantry {index:05d}",
            "location": f"{100 + index} Oak St, Springfield, IL 62701",
            "phone": f"(555) {200 + index // 10_000:03d}-{index % 10_000:04d}",
            "hours": "Mon-Fri 9am-5pm",
            "services": "emergency groceries, hot meals",
            "eligibility": "Open to all",
        }
        metadata = {"scraper_id": scraper_id, "record_index": index}
        records.append(ScrapedRecord(canonical_content(item), scraper_id, index, metadata))
    return records


def expected_rows(records: Iterable[ScrapedRecord]) -> dict[str, int]:
    """Rows per HSDS table the offline provider's documents for ``records`` map to (ids unioned)."""
    provider, config = RulesProvider(), GenerationConfig(model="rules-v1")
    ids: dict[str, set[str]] = {}
    for record in records:
        document = provider.generate(build_messages(record.content), {}, config).parsed
        assert document is not None
        for table, rows in plan_rows(document).items():
            ids.setdefault(table, set()).update(rows)
    return {table: len(found) for table, found in ids.items()}


# --- where every job is ---------------------------------------------------------------------


def _queue(connection: Redis, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=JSONSerializer)


def job_places(connection: Redis) -> dict[str, list[str]]:
    """Job id → every place RQ holds it: ``<queue>:<place>``. Read-only (no registry cleanup)."""
    places: dict[str, list[str]] = {}
    for name in QUEUES:
        q = _queue(connection, name)
        held = {
            "queued": q.get_job_ids(),
            "intermediate": q.intermediate_queue.get_job_ids(),
            "started": q.started_job_registry.get_job_ids(cleanup=False),
            "scheduled": q.scheduled_job_registry.get_job_ids(cleanup=False),
            "deferred": q.deferred_job_registry.get_job_ids(cleanup=False),
            "finished": q.finished_job_registry.get_job_ids(cleanup=False),
            "failed": q.failed_job_registry.get_job_ids(cleanup=False),
            "canceled": q.canceled_job_registry.get_job_ids(cleanup=False),
        }
        for place, ids in held.items():
            for job_id in ids:
                places.setdefault(job_id, []).append(f"{name}:{place}")
    return places


@dataclass
class Ledger:
    """Where each job of a run is: one place each, or listed as missing / in several places."""

    llm_ids: list[str]
    places: dict[str, list[str]]
    expected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Chained jobs exist once their LLM job got that far; a finished LLM job must have both.
        expected = list(self.llm_ids)
        for llm_id in self.llm_ids:
            for chained in (reconcile_job_id(llm_id), record_job_id(llm_id)):
                if chained in self.places or self.place(llm_id) == "finished":
                    expected.append(chained)
        self.expected = expected

    def place(self, job_id: str) -> str | None:
        found = self.places.get(job_id, [])
        return found[0].split(":", 1)[1] if len(found) == 1 else None

    @property
    def missing(self) -> list[str]:
        return [job_id for job_id in self.expected if not self.places.get(job_id)]

    @property
    def duplicated(self) -> dict[str, list[str]]:
        return {
            job_id: self.places[job_id] for job_id in self.expected if len(self.places.get(job_id, [])) > 1
        }

    def count(self, place: str) -> int:
        return sum(1 for job_id in self.expected if self.place(job_id) == place)

    def in_place(self, place: str, queue: str | None = None) -> list[str]:
        return [
            job_id
            for job_id in self.expected
            if len(self.places.get(job_id, [])) == 1
            and self.places[job_id][0].endswith(f":{place}")
            and (queue is None or self.places[job_id][0].startswith(f"{queue}:"))
        ]

    @property
    def settled(self) -> bool:
        """Every job in exactly one place, and that place final (finished or failed)."""
        return (
            not self.missing and not self.duplicated and all(self.place(j) in TERMINAL for j in self.expected)
        )

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for job_id in self.expected:
            key = "+".join(self.places.get(job_id, ["missing"]))
            key = key.split(":", 1)[1] if ":" in key and "+" not in key else key
            counts[key] = counts.get(key, 0) + 1
        return {"jobs": len(self.expected), "places": counts}


def ledger(connection: Redis, llm_ids: list[str]) -> Ledger:
    return Ledger(llm_ids, job_places(connection))


def failure_reason(connection: Redis, job_id: str) -> str:
    """Last line of a failed job's stored exception ("" if none was stored)."""
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def retries_used(connection: Redis, job_ids: Iterable[str]) -> dict[str, int | None]:
    """Retries each job has used of its queue's budget (None for a job that is gone)."""
    budgets = {RECONCILER_QUEUE: len(RECONCILER_RETRY_INTERVALS)}
    ids = list(job_ids)
    jobs = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
    return {
        job_id: (
            budgets.get(job.origin, len(LLM_RETRY_INTERVALS)) - (job.retries_left or 0)
            if job is not None
            else None
        )
        for job_id, job in zip(ids, jobs, strict=True)
    }


# --- outputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outputs:
    recorder_files: list[Path]
    summary_total: int
    db_rows: dict[str, int]

    @property
    def recorded_ids(self) -> list[str]:
        return [path.stem for path in self.recorder_files]


def read_outputs(output_dir: Path, database: Path) -> Outputs:
    import json

    files = sorted(output_dir.glob("daily/*/scrapers/*/*.json"))
    total = 0
    for summary in output_dir.glob("daily/*/summary.json"):
        total += int(json.loads(summary.read_text())["total_jobs"])
    rows: dict[str, int] = {}
    if database.exists():
        with contextlib.closing(sqlite3.connect(database)) as db:
            tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
            for table in tables:
                rows[table] = int(db.execute(f'select count(*) from "{table}"').fetchone()[0])
    return Outputs(files, total, rows)


# --- the pipeline -----------------------------------------------------------------------------

#: role → (supervisors, worker processes each)
Layout = dict[str, tuple[int, int]]
DEFAULT_LAYOUT: Layout = {LLM_QUEUE: (2, 2), RECONCILER_QUEUE: (1, 2), RECORDER_QUEUE: (1, 2)}


class Pipeline:
    """A dedicated AOF redis-server and supervisors per role, started like the tests start workers."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.server = EmbeddedRedis(workdir / "redis", appendonly=True, extra_args=AOF_ARGS)
        self.output_dir = workdir / "outputs"
        self.database = workdir / "hsds.sqlite"
        self.env = {
            "OUTPUT_DIR": str(self.output_dir),
            "DATABASE_URL": f"sqlite:///{self.database}",
            "CONTENT_STORE_BACKEND": "redis",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.supervisors: dict[str, list[WorkerProcess]] = {}
        self.retired: list[WorkerProcess] = []

    # lifecycle
    def start_redis(self) -> Pipeline:
        self.server.start()
        self.env["REDIS_URL"] = self.server.url
        return self

    def client(self) -> Redis:
        return connect(self.server.url, 8)

    def start_workers(self, layout: Layout = DEFAULT_LAYOUT) -> None:
        for role, (supervisors, count) in layout.items():
            for _ in range(supervisors):
                self.add_supervisor(role, count)

    def add_supervisor(self, role: str, count: int) -> WorkerProcess:
        worker = WorkerProcess.start(role, count, self.env, self.workdir)
        self.supervisors.setdefault(role, []).append(worker)
        return worker

    def stop(self) -> None:
        for worker in [w for ws in self.supervisors.values() for w in ws] + self.retired:
            worker.stop()
        self.server.stop()

    def logs(self) -> str:
        parts = []
        for worker in [w for ws in self.supervisors.values() for w in ws] + self.retired:
            parts.append(f"--- {worker.log_path.name}\n" + "\n".join(worker.log().splitlines()[-30:]))
        return "\n".join(parts)

    # work
    def submit(self, records: list[ScrapedRecord]) -> list[str]:
        connection = self.client()
        try:
            report = submit_records(connection, RedisContentStore(connection, 3600), records, ttl_s=3600)
        finally:
            connection.close()
        assert not report.deduplicated, "synthetic records must all be distinct"
        return [item.job_id for item in report.enqueued]

    def script(self, *steps: str) -> None:
        """Queue instructions for the scripted provider (see tests/support/providers.py)."""
        connection = self.client()
        try:
            with connection.pipeline() as pipe:
                pipe.delete("test:provider:script")
                for start in range(0, len(steps), 1000):
                    pipe.rpush("test:provider:script", *steps[start : start + 1000])
                pipe.execute()
        finally:
            connection.close()

    def children(self, role: str | None = None) -> list[int]:
        """Pids of live worker processes (of one role, or all), from each supervisor's /worker-status."""
        pids: list[int] = []
        for name, workers in self.supervisors.items():
            if role is not None and name != role:
                continue
            for worker in workers:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    pids += worker.child_pids()
        return pids

    def settle(self, connection: Redis, llm_ids: list[str], timeout: float) -> Ledger:
        """Wait until every job is finished or failed, in exactly one place; return that ledger."""
        found: list[Ledger] = []

        def settled() -> bool:
            book = ledger(connection, llm_ids)
            found[:] = [book]
            return book.settled

        try:
            wait_for(settled, timeout, interval=0.5, what="every job finished or failed")
        except AssertionError as exc:
            book = found[0] if found else None
            raise AssertionError(f"{exc}\n{book.summary() if book else ''}\n{self.logs()}") from None
        return found[0]


# --- fault injectors --------------------------------------------------------------------------


class Chaos:
    """A background thread that calls ``strike`` every ``interval`` (± jitter) seconds until stopped.

    ``strike`` returns a description of what it did (None: nothing to hit this time).
    """

    def __init__(
        self, strike: Callable[[random.Random], str | None], interval: tuple[float, float], seed: int
    ) -> None:
        self._strike = strike
        self._interval = interval
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.done: list[tuple[float, str]] = []
        self.errors: list[str] = []

    def __enter__(self) -> Chaos:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._rng.uniform(*self._interval)):
            try:
                what = self._strike(self._rng)
            except Exception as exc:  # the test reads errors; a dead chaos thread would hide faults
                self.errors.append(repr(exc))
                continue
            if what:
                self.done.append((time.monotonic(), what))


def kill_random_child(
    pipeline: Pipeline, roles: Iterable[str] = QUEUES
) -> Callable[[random.Random], str | None]:
    """A strike that SIGKILLs one random live worker process of ``roles``."""
    wanted = tuple(roles)

    def strike(rng: random.Random) -> str | None:
        role = rng.choice(wanted)
        pids = pipeline.children(role)
        if not pids:
            return None
        pid = rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return f"SIGKILL {role} worker {pid}"

    return strike


def metric_total(pipeline: Pipeline, name: str) -> float:
    """Sum of a counter's ``_total`` samples over every supervisor's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for worker in [w for ws in pipeline.supervisors.values() for w in ws]:
        code, body = worker.get("/metrics")
        if code != 200:
            continue
        for family in text_string_to_metric_families(body.decode()):
            if family.name == name:
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


def progress(connection: Redis) -> int:
    """Recorder jobs finished so far (the last stage of the pipeline)."""
    return int(_queue(connection, RECORDER_QUEUE).finished_job_registry.get_job_count(cleanup=False))


def wait_progress(connection: Redis, at_least: int, timeout: float, what: str) -> int:
    return wait_for(lambda: (lambda n: n if n >= at_least else 0)(progress(connection)), timeout, 0.2, what)
