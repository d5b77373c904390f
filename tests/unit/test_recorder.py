"""The recorder on a real file system: layout, the latest link, exact summaries under concurrent
processes, and ids that must never become paths."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pirate_worker.services import recorder
from pirate_worker.services.recorder import InvalidJobResultError, RecorderError, read_summary, record

DAY = date(2025, 3, 1)
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def job_result(job_id: str, scraper_id: str | None = "metro", status: str = "completed") -> dict[str, Any]:
    metadata = {"scraper_id": scraper_id} if scraper_id is not None else {}
    return {
        "job_id": job_id,
        "job": {"id": job_id, "prompt": "...", "metadata": metadata},
        "status": status,
        "result": {"text": "{}", "model": "rules-v1"},
    }


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (job_result("job-1", "metro"), "daily/2025-03-01/scrapers/metro/job-1.json"),
        (job_result("job-1", None), "daily/2025-03-01/processed/job-1.json"),
        ({"job_id": "job-1", "status": "failed"}, "daily/2025-03-01/processed/job-1.json"),
        (
            {"job_id": "job-1", "job": {"metadata": {"scraper_id": None}}},
            "daily/2025-03-01/processed/job-1.json",
        ),
    ],
)
def test_job_files_go_under_their_scraper_or_processed(
    tmp_path: Path, result: dict[str, Any], expected: str
) -> None:
    path = record(tmp_path, result, NOON)

    assert path == tmp_path / expected
    assert json.loads(path.read_text()) == result
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # Only the job file, the summary and the locks; no temporary file is left behind.
    assert files_under(tmp_path / "daily") == {
        expected.removeprefix("daily/"),
        "2025-03-01/summary.json",
        "2025-03-01/summary.lock",
        "latest.lock",
    }


def test_the_day_is_the_utc_date_of_now(tmp_path: Path) -> None:
    late_evening_in_new_york = datetime(2025, 3, 1, 22, 0, tzinfo=timezone(timedelta(hours=-5)))

    path = record(tmp_path, job_result("job-1"), late_evening_in_new_york)

    assert path.parts[-4] == "2025-03-02"


def test_a_naive_now_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(tmp_path, job_result("job-1"), datetime(2025, 3, 1, 12, 0))


def test_values_json_cannot_express_are_written_as_text(tmp_path: Path) -> None:
    result = {**job_result("job-1"), "completed_at": NOON}

    path = record(tmp_path, result, NOON)

    assert json.loads(path.read_text())["completed_at"] == "2025-03-01 12:00:00+00:00"


def test_latest_is_a_relative_link_that_follows_the_newest_day(tmp_path: Path) -> None:
    output_dir = tmp_path / "outputs"
    latest = output_dir / "latest"
    record(output_dir, job_result("job-1"), NOON)
    assert os.readlink(latest) == "daily/2025-03-01"

    record(output_dir, job_result("job-2"), NOON + timedelta(days=1))
    assert os.readlink(latest) == "daily/2025-03-02"
    assert (latest / "scrapers" / "metro" / "job-2.json").is_file()

    # A straggler stamped with the older day doesn't move it back.
    record(output_dir, job_result("job-3"), NOON)
    assert os.readlink(latest) == "daily/2025-03-02"
    # Relative, so the tree can be moved or mounted elsewhere.
    output_dir.rename(tmp_path / "moved")
    assert (tmp_path / "moved" / "latest" / "summary.json").is_file()


def test_a_real_folder_named_latest_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()

    with pytest.raises(RecorderError, match="not a symlink"):
        record(tmp_path, job_result("job-1"), NOON)
    assert (tmp_path / "latest").is_dir()


def test_summary_counts_jobs_by_scraper_and_status(tmp_path: Path) -> None:
    for job_id, scraper_id, status in [
        ("a", "metro", "completed"),
        ("b", "metro", "failed"),
        ("c", "county", "completed"),
        ("d", None, "completed"),
    ]:
        record(tmp_path, job_result(job_id, scraper_id, status), NOON)
    record(tmp_path, {"job_id": "e"}, NOON + timedelta(minutes=5))

    assert read_summary(tmp_path, DAY) == {
        "date": "2025-03-01",
        "total_jobs": 5,
        "by_scraper": {"metro": 2, "county": 1},
        "by_status": {"completed": 3, "failed": 1, "unknown": 1},
        "last_updated": "2025-03-01T12:05:00+00:00",
    }
    assert json.loads((tmp_path / "latest" / "summary.json").read_text()) == read_summary(tmp_path, DAY)


def test_recording_a_job_again_counts_it_once_and_follows_its_status(tmp_path: Path) -> None:
    record(tmp_path, job_result("job-1", status="failed"), NOON)
    record(tmp_path, job_result("job-1", status="failed"), NOON)
    summary = read_summary(tmp_path, DAY)
    assert (summary["total_jobs"], summary["by_scraper"], summary["by_status"]) == (
        1,
        {"metro": 1},
        {"failed": 1},
    )

    path = record(tmp_path, job_result("job-1", status="completed"), NOON)

    summary = read_summary(tmp_path, DAY)
    assert (summary["total_jobs"], summary["by_status"]) == (1, {"completed": 1})
    assert json.loads(path.read_text())["status"] == "completed"


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_a_recorder_killed_between_the_job_file_and_the_summary_is_counted_on_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(tmp_path, job_result("job-0"), NOON)
    real_write = recorder._write_json

    def die_before_the_summary(path: Path, content: Any) -> None:
        if path.name == "summary.json":
            raise Killed
        real_write(path, content)

    monkeypatch.setattr(recorder, "_write_json", die_before_the_summary)
    with pytest.raises(Killed):
        record(tmp_path, job_result("job-1"), NOON)
    monkeypatch.setattr(recorder, "_write_json", real_write)
    assert read_summary(tmp_path, DAY)["total_jobs"] == 1  # the file is there, the count is not

    record(tmp_path, job_result("job-2"), NOON)  # other jobs update the summary meanwhile
    record(tmp_path, job_result("job-1"), NOON)  # the job's retry

    summary = read_summary(tmp_path, DAY)
    assert (summary["total_jobs"], summary["by_status"]) == (3, {"completed": 3})


@pytest.mark.parametrize("damage", ["delete", "garble", "empty object"])
def test_a_lost_or_damaged_summary_is_rebuilt_from_the_job_files(tmp_path: Path, damage: str) -> None:
    record(tmp_path, job_result("a", "metro"), NOON)
    record(tmp_path, job_result("b", None, "failed"), NOON)
    summary_file = tmp_path / "daily" / "2025-03-01" / "summary.json"
    if damage == "delete":
        summary_file.unlink()
    else:
        summary_file.write_text("{not json" if damage == "garble" else "{}")

    assert read_summary(tmp_path, DAY)["total_jobs"] == 2  # read-only: counted from the files
    record(tmp_path, job_result("c", "county"), NOON)

    summary = read_summary(tmp_path, DAY)
    assert summary["total_jobs"] == 3
    assert summary["by_scraper"] == {"metro": 1, "county": 1}
    assert summary["by_status"] == {"completed": 2, "failed": 1}


def test_a_day_without_jobs_has_an_empty_summary(tmp_path: Path) -> None:
    assert read_summary(tmp_path, DAY) == {
        "date": "2025-03-01",
        "total_jobs": 0,
        "by_scraper": {},
        "by_status": {},
        "last_updated": None,
    }


HOSTILE_IDS = [
    "../x",
    "..",
    ".",
    "a/b",
    "a\\b",
    "x..y",
    "",
    ".hidden",
    "-rf",
    "a\nb",
    "job\n",
    "x" * 129,
    "é",
]


@pytest.mark.parametrize("job_id", [*HOSTILE_IDS, None, 42])
def test_hostile_job_ids_are_refused_before_anything_is_written(tmp_path: Path, job_id: Any) -> None:
    output_dir = tmp_path / "outputs"

    with pytest.raises(InvalidJobResultError, match="job_id"):
        record(output_dir, job_result(job_id), NOON)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scraper_id", [*HOSTILE_IDS, 42, ["metro"]])
def test_hostile_scraper_ids_are_refused_before_anything_is_written(tmp_path: Path, scraper_id: Any) -> None:
    output_dir = tmp_path / "outputs"

    with pytest.raises(InvalidJobResultError, match="scraper_id"):
        record(output_dir, job_result("job-1", scraper_id), NOON)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "job_id", ["a", "job-1", "3f2c9a1e-7b4d-4c1a-9e2f-0a1b2c3d4e5f", "x.y_z-1", "x" * 128]
)
def test_ordinary_ids_are_accepted(tmp_path: Path, job_id: str) -> None:
    assert record(tmp_path, job_result(job_id), NOON).name == f"{job_id}.json"


# Several processes, one day ----------------------------------------------------------------------

PROCESSES = 4
JOBS_PER_PROCESS = 50


def record_jobs(output_dir: Path, job_ids: list[str], start: Any, results: Any) -> None:
    """Child process: wait for the others, then record each job; scrapers and statuses rotate."""
    try:
        start.wait(timeout=60)
        for number, job_id in enumerate(job_ids):
            scraper_id = ["metro", "county", None][number % 3]
            status = "failed" if number % 5 == 0 else "completed"
            record(output_dir, job_result(job_id, scraper_id, status), NOON)
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def run_recorders(output_dir: Path, jobs_per_process: list[list[str]]) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(len(jobs_per_process)), context.Queue()
    workers = [
        context.Process(target=record_jobs, args=(output_dir, job_ids, start, results))
        for job_ids in jobs_per_process
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert outcomes == ["ok"] * len(workers)


@pytest.mark.slow
def test_four_processes_recording_at_once_keep_the_summary_exact(tmp_path: Path) -> None:
    run_recorders(tmp_path, [[f"p{p}-job-{n}" for n in range(JOBS_PER_PROCESS)] for p in range(PROCESSES)])

    total = PROCESSES * JOBS_PER_PROCESS
    job_files = list((tmp_path / "daily" / "2025-03-01").rglob("*-job-*.json"))
    assert len(job_files) == total
    summary = read_summary(tmp_path, DAY)
    assert summary["total_jobs"] == total
    # Per process: numbers 0..49 rotate over metro, county, none (17, 17, 16); every fifth fails (10).
    assert summary["by_scraper"] == {"metro": 17 * PROCESSES, "county": 17 * PROCESSES}
    assert summary["by_status"] == {"failed": 10 * PROCESSES, "completed": 40 * PROCESSES}
    assert os.readlink(tmp_path / "latest") == "daily/2025-03-01"
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_four_processes_recording_the_same_jobs_count_each_once(tmp_path: Path) -> None:
    shared = [f"shared-{n}" for n in range(20)]

    run_recorders(tmp_path, [shared] * PROCESSES)

    summary = read_summary(tmp_path, DAY)
    assert summary["total_jobs"] == len(shared)
    assert sum(summary["by_status"].values()) == len(shared)
    assert len(list((tmp_path / "daily").rglob("shared-*.json"))) == len(shared)
