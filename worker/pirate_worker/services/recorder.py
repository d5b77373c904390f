"""JSON audit files of finished LLM jobs under ``OUTPUT_DIR``, and the daily summary beside them.

Layout (dates are UTC)::

    <output_dir>/latest -> daily/<date>                 relative symlink to the newest day
    <output_dir>/daily/<date>/scrapers/<scraper_id>/<job_id>.json
    <output_dir>/daily/<date>/processed/<job_id>.json   jobs without a scraper id
    <output_dir>/daily/<date>/summary.json              counts of that day's job files
    <output_dir>/daily/<date>/summary.lock              flock serializing summary updates
    <output_dir>/daily/latest.lock                      flock serializing moves of ``latest``

Several recorder processes may write the same day at once: every file is replaced atomically,
and the summary is read, updated and rewritten under an exclusive lock, so it stays exact.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from pirate_worker.errors import InputError, PirateError

logger = logging.getLogger(__name__)

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Audit files are read by other users (a sidecar, an export job); mkstemp alone would make them 0600.
_FILE_MODE: Final = 0o644
_SUMMARY: Final = "summary.json"


class RecorderError(PirateError):
    """Base of the recorder's errors."""


class InvalidJobResultError(RecorderError, InputError):
    """The job result can't be recorded as given (a missing or unsafe id); retrying won't help."""


def record(output_dir: Path, result: Mapping[str, Any], now: datetime) -> Path:
    """Write ``result`` (a JSON-able ``JobResult`` dump) as the day's audit file and count it.

    ``now`` (timezone-aware) picks the day. Recording the same job id again rewrites its file
    without counting it twice. Returns the path written. Raises :class:`InvalidJobResultError`
    for an id that is missing or not safe as a file name, before anything is written.
    """
    job_id, scraper_id = _identify(result)
    day = _utc_day(now)
    day_dir = output_dir / "daily" / day.isoformat()
    folder = day_dir / "scrapers" / scraper_id if scraper_id else day_dir / "processed"
    path = folder / f"{job_id}.json"
    status = _status_of(result)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(day_dir / "summary.lock"):
        summary = _load_summary(day_dir) or _rebuild_summary(day_dir, day)
        previous_status = _recorded_status(path)
        if previous_status is not None and summary["total_jobs"] != _count_job_files(day_dir):
            # A recorder died between a job's file and the summary (SIGKILL, OOM): the file is
            # there, the count is not, and this is that job's retry (or another re-record).
            # Under the lock every other file is counted, so a mismatch means exactly that.
            summary = _rebuild_summary(day_dir, day)
        _write_json(path, result)
        _count(summary, scraper_id, status, previous_status)
        summary["last_updated"] = now.astimezone(UTC).isoformat()
        _write_json(day_dir / _SUMMARY, summary)
    _point_latest(output_dir, day)
    logger.debug("recorded job %s to %s", job_id, path)
    return path


def read_summary(output_dir: Path, day: date) -> dict[str, Any]:
    """The summary of ``day``; counted from the job files (``last_updated`` null) if it is lost."""
    day_dir = output_dir / "daily" / day.isoformat()
    # Writers replace the file atomically, so reading needs no lock.
    return _load_summary(day_dir) or _rebuild_summary(day_dir, day)


def _identify(result: Mapping[str, Any]) -> tuple[str, str | None]:
    """The job id and scraper id of a result, each checked to be safe as a path component."""
    job_id = result.get("job_id")
    job = result.get("job")
    metadata = job.get("metadata") if isinstance(job, Mapping) else None
    scraper_id = metadata.get("scraper_id") if isinstance(metadata, Mapping) else None
    checked_job_id = _safe_name("job_id", job_id)
    if scraper_id is None:
        return checked_job_id, None
    return checked_job_id, _safe_name("job.metadata.scraper_id", scraper_id)


def _safe_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise InvalidJobResultError(
            f"{field} {value!r} is not a safe file name "
            "(letters, digits, '.', '_', '-'; at most 128; no '..')"
        )
    return value


def _utc_day(now: datetime) -> date:
    if now.tzinfo is None:
        # A naive time would silently be taken as the host's local time and file jobs under the wrong day.
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).date()


def _status_of(result: Mapping[str, Any]) -> str:
    status = result.get("status")
    return status if isinstance(status, str) and status else "unknown"


def _recorded_status(path: Path) -> str | None:
    """The status of an already recorded job, None if it is new."""
    try:
        return _status_of(_read_json(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unknown"


def _count_job_files(day_dir: Path) -> int:
    """Job files of a day, from the directory listings alone (nothing is read)."""
    processed = sum(1 for _ in (day_dir / "processed").glob("*.json"))
    return processed + sum(1 for _ in (day_dir / "scrapers").glob("*/*.json"))


def _empty_summary(day: date) -> dict[str, Any]:
    return {"date": day.isoformat(), "total_jobs": 0, "by_scraper": {}, "by_status": {}, "last_updated": None}


def _count(summary: dict[str, Any], scraper_id: str | None, status: str, previous_status: str | None) -> None:
    """Add a new job to the counts, or move a re-recorded one to its new status."""
    by_status: dict[str, int] = summary["by_status"]
    if previous_status is None:
        summary["total_jobs"] += 1
        if scraper_id:
            summary["by_scraper"][scraper_id] = summary["by_scraper"].get(scraper_id, 0) + 1
    elif previous_status != status:
        left = by_status.pop(previous_status, 0) - 1
        if left > 0:
            by_status[previous_status] = left
    else:
        return
    by_status[status] = by_status.get(status, 0) + 1


def _load_summary(day_dir: Path) -> dict[str, Any] | None:
    """The stored summary, or None if it is missing or unreadable (a hand edit, a full disk)."""
    try:
        summary = _read_json(day_dir / _SUMMARY)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("summary in %s is unreadable (%s); rebuilding it from the job files", day_dir, exc)
        return None
    counts = (summary.get("total_jobs"), summary.get("by_scraper"), summary.get("by_status"))
    if not (isinstance(counts[0], int) and isinstance(counts[1], dict) and isinstance(counts[2], dict)):
        logger.warning("summary in %s lacks its counts; rebuilding it from the job files", day_dir)
        return None
    return dict(summary)


def _rebuild_summary(day_dir: Path, day: date) -> dict[str, Any]:
    """Count the job files on disk; a day without any gets an all-zero summary."""
    summary = _empty_summary(day)
    candidates: list[tuple[Path, str | None]] = [
        (path, None) for path in (day_dir / "processed").glob("*.json")
    ]
    candidates += [(path, path.parent.name) for path in (day_dir / "scrapers").glob("*/*.json")]
    for path, scraper_id in candidates:
        _count(summary, scraper_id, _recorded_status(path) or "unknown", previous_status=None)
    return summary


def _read_json(path: Path) -> Mapping[str, Any]:
    loaded = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path.name} does not hold a JSON object")
    return loaded


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically: readers see the old file or the new one, never a torn write."""
    text = json.dumps(content, indent=2, ensure_ascii=False, default=str)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_path``, across processes (same host or shared volume)."""
    # The lock file is never deleted: a process could lock an unlinked file while another creates a new one.
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _point_latest(output_dir: Path, day: date) -> None:
    """Point ``latest`` at ``daily/<day>`` unless it already points at that day or a later one."""
    link = output_dir / "latest"
    target = f"daily/{day.isoformat()}"
    # Serialized so two processes around midnight can't leave it pointing at the older day.
    with _locked(output_dir / "daily" / "latest.lock"):
        try:
            current = os.readlink(link)
        except FileNotFoundError:
            current = ""
        except OSError as exc:  # EINVAL: ``latest`` is a real file or folder, not ours to replace
            raise RecorderError(
                f"{link} exists and is not a symlink; remove it to let the recorder manage it"
            ) from exc
        # ISO dates order like strings; a link not made by us is replaced.
        if current.startswith("daily/") and current >= target:
            return
        temporary = output_dir / f".latest.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        os.symlink(target, temporary)
        os.replace(temporary, link)
    logger.info("%s now points to %s", link, target)
