from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from pirate_worker.contracts.connection import connect
from pirate_worker.services.content_store import RedisContentStore
from pirate_worker.services.scraper_files import ScrapedRecord, load_scraper_file
from pirate_worker.services.submission import SubmitReport, submit_records
from tests.support.processes import ROOT, WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def worker_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "OUTPUT_DIR": str(tmp_path / "outputs"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hsds.sqlite'}",
        "CONTENT_STORE_BACKEND": "redis",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def sample_records() -> list[ScrapedRecord]:
    return [r for path in sorted((ROOT / "examples").glob("*.json")) for r in load_scraper_file(path)]


@pytest.fixture
def submit(redis_url: str) -> Iterator[object]:
    connection = connect(redis_url)

    def _submit(records: list[ScrapedRecord]) -> SubmitReport:
        return submit_records(connection, RedisContentStore(connection, 3600), records, ttl_s=3600)

    yield _submit
    connection.close()


@pytest.fixture
def workers(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def script(redis: Redis, *steps: str) -> None:
    redis.delete("test:provider:script")
    if steps:
        redis.rpush("test:provider:script", *steps)
