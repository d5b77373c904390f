"""Load helpers shared by ``tests/integration/test_load.py`` and ``bench/load.py``: distinct
records in any number, process-tree RSS from /proc, and counting the Redis commands one client
sends (no MONITOR: it would slow the server down and see every other client too).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.connection import ConnectionPool

from pirate_worker.services.scraper_files import ScrapedRecord, canonical_content, load_scraper_file

ROOT = Path(__file__).resolve().parents[2]


def synthetic_records(count: int) -> list[ScrapedRecord]:
    """``count`` records with distinct content (no deduplication), cycling the examples' shapes."""
    base = [r for path in sorted((ROOT / "examples").glob("*.json")) for r in load_scraper_file(path)]
    records = []
    for index in range(count):
        source = base[index % len(base)]
        item = {**json.loads(source.content), "load_index": index}
        records.append(
            ScrapedRecord(
                content=canonical_content(item),
                scraper_id=source.scraper_id,
                index=index,
                metadata={**source.metadata, "record_index": index},
            )
        )
    return records


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB, None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, grandchildren...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        children = [child for child, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def tree_rss(pid: int) -> dict[int, int]:
    """RSS in KiB of ``pid`` and of every process below it."""
    sizes = {p: rss_kib(p) for p in [pid, *descendants(pid)]}
    return {p: size for p, size in sizes.items() if size is not None}


@dataclass
class CommandCount:
    """Commands and round trips one client sent (pipelines count each command inside)."""

    commands: int = 0
    round_trips: int = 0


def counting_client(url: str, **options: Any) -> tuple[Redis, CommandCount]:
    """A client on ``url`` whose every command is counted client-side; plain redis:// URLs."""
    count = CommandCount()
    pool = ConnectionPool.from_url(url, **options)
    base = pool.connection_class

    class Counting(base):  # type: ignore[misc,valid-type]
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            count.commands += 1
            count.round_trips += 1
            super().send_command(*args, **kwargs)

        def pack_commands(self, commands: Any) -> Any:
            commands = list(commands)
            count.commands += len(commands)
            count.round_trips += 1
            return super().pack_commands(commands)

    pool.connection_class = Counting
    return Redis(connection_pool=pool), count


def server_command_total(redis: Redis) -> int:
    """Commands the server has run so far, all clients together (INFO commandstats)."""
    stats = redis.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def server_output_bytes(redis: Redis) -> int:
    """Bytes the server has sent so far, all clients together (INFO stats)."""
    return int(redis.info("stats")["total_net_output_bytes"])


def bench_worker_env(url: str, folder: Path, health_port: int) -> dict[str, str]:
    """The environment of a benchmark's ``pirate-workers worker``: this Redis, results under
    ``folder``, quiet logs, the offline provider unless the caller names another."""
    env = {
        **os.environ,
        "REDIS_URL": url,
        "OUTPUT_DIR": str(folder / "outputs"),
        "DATABASE_URL": f"sqlite:///{folder / 'hsds.sqlite'}",
        "HEALTH_PORT": str(health_port),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("LLM_PROVIDER", None)
    return env
