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


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number: not allowed")


def _json_type(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array", type(None): "null"}
    return names.get(type(value), type(value).__name__)


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
        document = json.loads(text, parse_constant=_reject_constant)
        # A lone surrogate escape ("\ud800") parses but can never be written out as UTF-8.
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except UnicodeEncodeError:
        raise InputError(f"{path}: contains an unpaired UTF-16 surrogate escape (such as \\ud800)") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InputError(f"{path}: not valid JSON here: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer longer than Python converts
        raise InputError(f"{path}: not valid JSON here: {str(exc).split(':')[0]}") from None
    if not isinstance(document, dict):
        raise InputError(
            f"{path}: expected a JSON object with scraper_id and raw_data, got {type(document).__name__}"
        )
    try:
        parsed = ScraperFile.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"]
        if len(loc) >= 2 and loc[0] == "raw_data" and isinstance(loc[1], int):
            # The union's error names pydantic types ("raw_data.0.dict[str,any]"); say it plainly.
            item = document["raw_data"][loc[1]]
            raise InputError(
                f"{path}: raw_data[{loc[1]}]: must be a JSON object or a string, got {_json_type(item)}"
            ) from None
        where = ".".join(str(p) for p in loc)
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
