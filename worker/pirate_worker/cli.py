"""``pirate-workers``: the one console script (DESIGN §3).

The composition root: each command builds the settings and clients it needs, calls into the
runtime/services, and turns errors into one line on stderr with a non-zero exit code.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from redis import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

from pirate_worker.contracts.connection import connect, redact_url
from pirate_worker.contracts.queues import queues_for_role
from pirate_worker.errors import ConfigError, InputError, PirateError, ServiceUnavailable
from pirate_worker.settings import Settings, load_settings

app = typer.Typer(
    name="pirate-workers",
    help="Pantry Pirate Radio's RQ workers, their operator and a local demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def redis_or_fail(settings: Settings, wait_s: float = 0.0) -> Redis:
    """Connect and ping, waiting up to ``wait_s`` for a Redis that is still starting."""
    connection = connect(settings.REDIS_URL, settings.REDIS_POOL_SIZE)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            connection.ping()
            return connection
        except RedisError as exc:
            if time.monotonic() >= deadline:
                fail(f"cannot reach Redis at {redact_url(settings.REDIS_URL)}: {exc}", EXIT_UNAVAILABLE)
            time.sleep(1.0)


def settings_or_fail(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        fail(str(exc))


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def worker(
    role: Annotated[str, typer.Option(help="llm, reconciler, recorder, or a custom role name with --queues")],
    count: Annotated[int | None, typer.Option(help="worker processes (1-20); default WORKER_COUNT")] = None,
    queues: Annotated[str | None, typer.Option(help="comma-separated RQ queues for a custom role")] = None,
    burst: Annotated[bool, typer.Option(help="exit when the queues are empty")] = False,
    health_port: Annotated[int | None, typer.Option(help="port of /health and /metrics; 0 disables")] = None,
) -> None:
    """Run N RQ worker processes for a role; warm shutdown on SIGTERM."""
    from pirate_worker.runtime.supervisor import WorkerPlan, run_workers

    overrides: dict[str, Any] = {}
    if count is not None:
        overrides["WORKER_COUNT"] = count
    if health_port is not None:
        overrides["HEALTH_PORT"] = health_port
    settings = settings_or_fail(**overrides)
    custom = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else ()
    try:
        names = queues_for_role(role, custom)
        _check_provider(settings, role)
    except (ValueError, ConfigError) as exc:
        fail(str(exc))
    _configure_logging(settings)
    redis_or_fail(settings, wait_s=30.0)
    plan = WorkerPlan.for_role(role, names, settings.WORKER_COUNT, burst=burst)
    if settings.POD_NAME:
        plan = dataclasses.replace(plan, hostname=settings.POD_NAME)
    raise typer.Exit(run_workers(settings, plan))


def _check_provider(settings: Settings, role: str) -> None:
    """Fail at start, not on the first job, when the provider cannot be built."""
    if role == "llm":
        from pirate_worker.llm.factory import build_provider

        build_provider(settings)


@app.command()
def enqueue(
    paths: Annotated[list[Path], typer.Argument(help="scraper output files (JSON)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Submit scraper output files as LLM jobs, skipping content already seen."""
    from pirate_worker.jobs.context import build_content_store
    from pirate_worker.services.scraper_files import load_scraper_file
    from pirate_worker.services.submission import submit_records

    settings = settings_or_fail()
    try:
        records = [record for path in _expand(paths) for record in load_scraper_file(path)]
    except InputError as exc:
        fail(str(exc))
    connection = redis_or_fail(settings)
    report = submit_records(
        connection, build_content_store(settings, connection), records, settings.REDIS_TTL_SECONDS
    )
    if as_json:
        items = [
            {**item.__dict__, "outcome": item.outcome.value, "deduplicated": item.deduplicated}
            for item in report.items
        ]
        out.print_json(
            json.dumps(
                {"enqueued": len(report.enqueued), "deduplicated": len(report.deduplicated), "jobs": items}
            )
        )
        return
    for item in report.items:
        out.print(f"{item.job_id}  {item.scraper_id}#{item.index}  {item.outcome.value}", highlight=False)
    out.print(
        f"{len(report.items)} records: {len(report.enqueued)} enqueued, "
        f"{len(report.deduplicated)} deduplicated"
    )


def _expand(paths: list[Path]) -> list[Path]:
    """Directories stand for the ``*.json`` files in them."""
    expanded: list[Path] = []
    for path in paths:
        if path.is_dir():
            expanded.extend(sorted(path.glob("*.json")))
        else:
            expanded.append(path)
    if not expanded:
        raise InputError("no scraper files found")
    return expanded


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print the snapshot as JSON")] = False,
    job: Annotated[str | None, typer.Option(help="show one job by id instead")] = None,
) -> None:
    """Queues, workers, provider state and content-store statistics."""
    from pirate_worker.jobs.context import build_content_store
    from pirate_worker.services.provider_state import provider_state_store
    from pirate_worker.services.queueing import describe_job
    from pirate_worker.services.status import snapshot

    settings = settings_or_fail()
    connection = redis_or_fail(settings)
    if job is not None:
        view = describe_job(connection, job)
        if view is None:
            fail(f"no job with id {job!r}", EXIT_UNAVAILABLE)
        out.print_json(json.dumps(view.as_dict(), default=str))
        return
    snap = snapshot(
        connection, provider_state_store(settings, connection), build_content_store(settings, connection)
    )
    if as_json:
        out.print_json(json.dumps(snap.as_dict(), default=str))
        return
    table = Table("queue", "queued", "in flight", "stale", "scheduled", "finished", "failed")
    for q in snap.queues:
        table.add_row(
            q.name, *(str(v) for v in (q.queued, q.in_flight, q.stale, q.scheduled, q.finished, q.failed))
        )
    out.print(table)
    workers = ", ".join(f"{n} {s}" for s, n in sorted(snap.workers.items())) or "none"
    out.print(f"workers: {workers}")
    p = snap.provider
    out.print(f"provider {p['name']}: {p['state']}" + (f" until {p['retry_at']}" if p["retry_at"] else ""))
    if snap.content_store is not None:
        cs = snap.content_store
        out.print(
            f"content store: {cs['entries']} entries, {cs['completed']} completed, "
            f"{cs['enqueue_hits'] + cs['processing_hits']} provider calls avoided"
        )
    _print_cost(snap.cost)


def _print_cost(cost: dict[str, Any]) -> None:
    calls = cost.get("provider_calls") or {}
    if calls:
        by_outcome = ", ".join(f"{n} {outcome}" for outcome, n in sorted(calls.items()))
        out.print(f"provider calls: {by_outcome}", highlight=False)
    for provider, kinds in sorted((cost.get("tokens") or {}).items()):
        used = ", ".join(f"{n} {kind.removesuffix('_tokens')}" for kind, n in sorted(kinds.items()))
        out.print(f"tokens {provider}: {used}", highlight=False)


@app.command()
def demo(
    examples: Annotated[Path, typer.Option(help="folder of scraper output files")] = Path("examples"),
    llm_workers: Annotated[int, typer.Option(help="most llm worker processes")] = 4,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 600.0,
    fixed: Annotated[bool, typer.Option(help="fixed worker counts instead of the autoscaler")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print only the summary, as JSON")] = False,
) -> None:
    """Run the whole pipeline locally: embedded Redis, offline provider, autoscaled workers, summary."""
    from pirate_worker.runtime.demo import DEMO_EXTRA_INSTALL, DemoRun, missing_demo_dependencies

    settings = settings_or_fail()
    missing = missing_demo_dependencies(settings)
    if missing:
        fail(f"demo needs the demo extra ({', '.join(missing)} not installed): {DEMO_EXTRA_INSTALL}")
    if not 1 <= llm_workers <= 20:
        fail("--llm-workers must be between 1 and 20")
    scaler = None if fixed else _local_autoscaler(settings.provider, llm_workers)
    try:
        files = _expand([examples])
        console = Console(quiet=True) if as_json else out
        run = DemoRun(
            settings,
            files,
            timeout_s=timeout,
            console=console,
            scaler_factory=scaler,
            llm_workers=llm_workers,
        )
        result = run.run()
    except InputError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(dataclasses.asdict(result), default=str))
    if result.failed:
        raise typer.Exit(EXIT_UNAVAILABLE)


db_app = typer.Typer(
    help="The HSDS database (DATABASE_URL): schema migrations and row counts.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


def _database_label(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the HSDS schema to this release's latest revision (safe to run concurrently)."""
    from pirate_worker.db.engine import create_database_engine
    from pirate_worker.db.migrate import upgrade

    settings = settings_or_fail()
    before, after = upgrade(create_database_engine(settings.DATABASE_URL))
    where = _database_label(settings.DATABASE_URL)
    if before == after:
        out.print(f"{where}: schema already at revision {after}", highlight=False, soft_wrap=True)
    else:
        out.print(
            f"{where}: schema upgraded from {before or 'empty'} to revision {after}",
            highlight=False,
            soft_wrap=True,
        )


@db_app.command("stats")
def db_stats(
    as_json: Annotated[bool, typer.Option("--json", help="print the counts as JSON")] = False,
) -> None:
    """Rows per table, and per source (scraper): records, rows they produced, versions they caused."""
    from pirate_worker.db.engine import create_database_engine
    from pirate_worker.db.migrate import current_revision, head_revision
    from pirate_worker.services.reconciler import database_stats, source_stats

    settings = settings_or_fail()
    engine = create_database_engine(settings.DATABASE_URL)
    revision = current_revision(engine)
    if revision != head_revision():
        fail(
            f"database schema is at {revision or 'nothing'}, expected {head_revision()}: "
            "run `pirate-workers db upgrade`",
            EXIT_UNAVAILABLE,
        )
    tables, sources = database_stats(engine), source_stats(engine)
    if as_json:
        out.print_json(json.dumps({"revision": revision, "tables": tables, "sources": sources}))
        return
    table = Table("table", "rows")
    for name, count in tables.items():
        table.add_row(name, str(count))
    out.print(table)
    if sources:
        # One column per source: there are fewer sources than tables, and tables don't wrap.
        per_source = Table("rows by source", *sources)
        for row in next(iter(sources.values())):
            per_source.add_row(row, *(str(counts[row]) for counts in sources.values()))
        out.print(per_source)


def _local_autoscaler(provider: str, max_llm: int) -> Any:
    """The operator's decision engine driving local processes, when the operator extra is installed."""
    try:
        local = importlib.import_module("pirate_operator.local")
    except ImportError:
        return None

    def build(redis_url: str, env: dict[str, str], log_dir: Path) -> Any:
        return local.LocalAutoscaler(local.demo_pool(redis_url, provider, max_llm), env, log_dir)

    return build


def _operator_app() -> typer.Typer | None:
    """The operator's commands (``operator``, ``simulate``, ``crd``) when that extra is installed."""
    try:
        module = importlib.import_module("pirate_operator.cli")
    except ImportError:
        return None
    found = getattr(module, "operator_app", None)
    return found if isinstance(found, typer.Typer) else None


def main() -> None:
    """Entry point: one-line errors for user mistakes, never a traceback."""
    operator_app = _operator_app()
    if operator_app is not None:
        for command in operator_app.registered_commands:
            app.registered_commands.append(command)
    try:
        # Without standalone mode click returns the exit code instead of exiting.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TyperException as exc:
        # Usage errors (unknown command or option, bad option value): one line, no usage box.
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err.print(f"error: {message}", markup=False, highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    except (ConfigError, InputError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_BAD_INPUT)
    except (ServiceUnavailable, RedisError) as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_UNAVAILABLE)
    except PirateError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(EXIT_UNAVAILABLE)
