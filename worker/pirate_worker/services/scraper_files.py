"""Scraper output files: ``{scraper_id, scraper_version, scrape_timestamp, source_url, raw_data: [...]}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pirate_worker.errors import InputError

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024


class ScraperFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    scraper_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    scraper_version: str | None = None
    scrape_timestamp: str | None = None
    source_url: str | None = None
    total_records: int | None = None
    raw_data: list[dict[str, Any] | str] = Field(min_length=0)


@dataclass(frozen=True)
class ScrapedRecord:
    """One ``raw_data`` item, serialized exactly as it is hashed and sent to the provider."""

    content: str
    scraper_id: str
    index: int
    metadata: dict[str, Any]


def canonical_content(item: dict[str, Any] | str) -> str:
    """Stable text of a record: key order and whitespace of the source file do not matter."""
    if isinstance(item, str):
        return item
    return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_scraper_file(path: Path) -> list[ScrapedRecord]:
    """Parse and check one file completely; raise :class:`InputError` with a one-line reason."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: {size} bytes is larger than the {MAX_FILE_BYTES} byte limit")
    try:
        text = path.read_bytes().decode("utf-8")
        document = json.loads(text)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(document, dict):
        raise InputError(
            f"{path}: expected a JSON object with scraper_id and raw_data, got {type(document).__name__}"
        )
    try:
        parsed = ScraperFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from None
    records = []
    for index, item in enumerate(parsed.raw_data):
        content = canonical_content(item)
        if not content.strip() or content == "{}":
            raise InputError(f"{path}: raw_data[{index}] is empty")
        if len(content.encode("utf-8")) > MAX_RECORD_BYTES:
            raise InputError(
                f"{path}: raw_data[{index}] is larger than the {MAX_RECORD_BYTES} byte record limit"
            )
        metadata = {
            "scraper_id": parsed.scraper_id,
            "scraper_version": parsed.scraper_version,
            "scrape_timestamp": parsed.scrape_timestamp,
            "source_url": parsed.source_url,
            "source_file": path.name,
            "record_index": index,
        }
        records.append(
            ScrapedRecord(content=content, scraper_id=parsed.scraper_id, index=index, metadata=metadata)
        )
    return records
