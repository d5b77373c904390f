"""Content-hash deduplication shared by every pod: sha256 of the exact scraped content.

An entry is *pending* (a job owns it) or *completed* (the aligned result is stored). The Redis
backend is the default because all pods share it; the SQLite file backend serves local runs and
survives the embedded Redis of ``demo``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from redis import Redis

from pirate_worker.contracts import keys
from pirate_worker.contracts.connection import as_text
from pirate_worker.errors import InputError

HASH_PATTERN = re.compile(r"^[a-f0-9]{64}$")


def content_hash(content: str) -> str:
    """sha256 hex digest of the exact content (UTF-8)."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def check_hash(value: str) -> str:
    """Reject anything that is not a lowercase sha256 hex digest (keys and paths are built from it)."""
    if not isinstance(value, str) or not HASH_PATTERN.fullmatch(value):
        raise InputError(f"invalid content hash {str(value)[:80]!r}: expected 64 lowercase hex characters")
    return value


class EntryStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


@dataclass(frozen=True)
class ContentEntry:
    hash: str
    status: EntryStatus
    job_id: str | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class ContentStats:
    entries: int
    completed: int
    pending: int
    enqueue_hits: int
    processing_hits: int


class ContentStore(Protocol):
    """Backend interface; every method validates the hash."""

    def get(self, digest: str) -> ContentEntry | None: ...

    def claim(self, digest: str, job_id: str, steal_from: str | None = None) -> ContentEntry:
        """Make ``job_id`` the owner unless an entry exists; return the entry now stored.

        With ``steal_from``, a pending entry owned by that (dead) job is handed to ``job_id``.
        """
        ...

    def complete(self, digest: str, job_id: str, result: dict[str, Any]) -> None: ...

    def count_hit(self, stage: str) -> None: ...

    def stats(self) -> ContentStats: ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


# Atomic claim: create a pending entry, or hand a pending entry over from a dead owner.
_CLAIM_LUA = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  redis.call('HSET', KEYS[1], 'status', 'pending', 'job_id', ARGV[1], 'created_at', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('HINCRBY', KEYS[2], 'entries', 1)
elseif status == 'pending' and ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'job_id') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'job_id', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return redis.call('HMGET', KEYS[1], 'status', 'job_id', 'result')
"""

_COMPLETE_LUA = """
local was = redis.call('HGET', KEYS[1], 'status')
redis.call('HSET', KEYS[1], 'status', 'completed', 'job_id', ARGV[1], 'result', ARGV[2],
           'completed_at', ARGV[3])
redis.call('PERSIST', KEYS[1])
if not was then redis.call('HINCRBY', KEYS[2], 'entries', 1) end
if was ~= 'completed' then redis.call('HINCRBY', KEYS[2], 'completed', 1) end
return 1
"""


def _entry(digest: str, status: Any, job_id: Any, result: Any) -> ContentEntry | None:
    if status is None:
        return None
    return ContentEntry(
        hash=digest,
        status=EntryStatus(as_text(status)),
        job_id=as_text(job_id) if job_id is not None else None,
        result=json.loads(as_text(result)) if result else None,
    )


class RedisContentStore:
    """Entries as hashes ``pirate:content:<sha256>``; pending ones expire with the job TTL."""

    def __init__(self, connection: Redis, pending_ttl_s: int) -> None:
        self._redis = connection
        self._pending_ttl = pending_ttl_s
        self._claim = connection.register_script(_CLAIM_LUA)
        self._complete = connection.register_script(_COMPLETE_LUA)

    def get(self, digest: str) -> ContentEntry | None:
        values = self._redis.hmget(keys.content_entry_key(check_hash(digest)), ["status", "job_id", "result"])
        return _entry(digest, *values)

    def claim(self, digest: str, job_id: str, steal_from: str | None = None) -> ContentEntry:
        values = self._claim(
            keys=[keys.content_entry_key(check_hash(digest)), keys.content_stats_key()],
            args=[job_id, steal_from or "", _now(), self._pending_ttl],
        )
        entry = _entry(digest, *values)
        assert entry is not None  # the script always leaves an entry behind
        return entry

    def complete(self, digest: str, job_id: str, result: dict[str, Any]) -> None:
        self._complete(
            keys=[keys.content_entry_key(check_hash(digest)), keys.content_stats_key()],
            args=[job_id, json.dumps(result, separators=(",", ":")), _now()],
        )

    def count_hit(self, stage: str) -> None:
        self._redis.hincrby(keys.content_stats_key(), f"{stage}_hits", 1)

    def stats(self) -> ContentStats:
        raw = {as_text(k): int(v) for k, v in self._redis.hgetall(keys.content_stats_key()).items()}
        entries, completed = raw.get("entries", 0), raw.get("completed", 0)
        return ContentStats(
            entries=entries,
            completed=completed,
            pending=max(entries - completed, 0),
            enqueue_hits=raw.get("enqueue_hits", 0),
            processing_hits=raw.get("processing_hits", 0),
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS content (
    hash TEXT PRIMARY KEY, status TEXT NOT NULL, job_id TEXT, result TEXT,
    created_at TEXT NOT NULL, completed_at TEXT
);
CREATE TABLE IF NOT EXISTS content_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SqliteContentStore:
    """One SQLite file shared by the local worker processes (WAL, immediate transactions)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db().executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def get(self, digest: str) -> ContentEntry | None:
        row = (
            self._db()
            .execute("SELECT status, job_id, result FROM content WHERE hash = ?", (check_hash(digest),))
            .fetchone()
        )
        return _entry(digest, *row) if row else None

    def claim(self, digest: str, job_id: str, steal_from: str | None = None) -> ContentEntry:
        check_hash(digest)
        with self._tx() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO content (hash, status, job_id, created_at) "
                "VALUES (?, 'pending', ?, ?)",
                (digest, job_id, _now()),
            ).rowcount
            if inserted:
                self._bump(db, "entries")
            elif steal_from:
                db.execute(
                    "UPDATE content SET job_id = ? WHERE hash = ? AND status = 'pending' AND job_id = ?",
                    (job_id, digest, steal_from),
                )
            row = db.execute(
                "SELECT status, job_id, result FROM content WHERE hash = ?", (digest,)
            ).fetchone()
        entry = _entry(digest, *row)
        assert entry is not None
        return entry

    def complete(self, digest: str, job_id: str, result: dict[str, Any]) -> None:
        check_hash(digest)
        with self._tx() as db:
            row = db.execute("SELECT status FROM content WHERE hash = ?", (digest,)).fetchone()
            db.execute(
                "INSERT INTO content (hash, status, job_id, result, created_at, completed_at) "
                "VALUES (?, 'completed', ?, ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET "
                "status = 'completed', job_id = excluded.job_id, result = excluded.result, "
                "completed_at = excluded.completed_at",
                (digest, job_id, json.dumps(result, separators=(",", ":")), _now(), _now()),
            )
            if row is None:
                self._bump(db, "entries")
            if row is None or row[0] != "completed":
                self._bump(db, "completed")

    def count_hit(self, stage: str) -> None:
        with self._tx() as db:
            self._bump(db, f"{stage}_hits")

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str) -> None:
        db.execute(
            "INSERT INTO content_stats (name, value) VALUES (?, 1) "
            "ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )

    def stats(self) -> ContentStats:
        raw = dict(self._db().execute("SELECT name, value FROM content_stats").fetchall())
        entries, completed = raw.get("entries", 0), raw.get("completed", 0)
        return ContentStats(
            entries=entries,
            completed=completed,
            pending=max(entries - completed, 0),
            enqueue_hits=raw.get("enqueue_hits", 0),
            processing_hits=raw.get("processing_hits", 0),
        )
