"""Turn scraped records into LLM jobs, skipping content that is already done or in flight."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from redis import Redis

from pirate_worker.contracts import keys
from pirate_worker.contracts.payloads import LLMJob
from pirate_worker.services.content_store import ContentStore, EntryStatus, content_hash
from pirate_worker.services.queueing import LIVE_STATES, enqueue_llm_job, fetch_job
from pirate_worker.services.scraper_files import ScrapedRecord

OUTPUT_FORMAT = {"type": "hsds_aligned_document", "version": "3.0"}


class Outcome(StrEnum):
    ENQUEUED = "enqueued"
    IN_FLIGHT = "deduplicated: same content already queued"
    DONE = "deduplicated: same content already processed"


@dataclass(frozen=True)
class Submitted:
    job_id: str
    scraper_id: str
    index: int
    content_hash: str
    outcome: Outcome

    @property
    def deduplicated(self) -> bool:
        return self.outcome is not Outcome.ENQUEUED


@dataclass
class SubmitReport:
    items: list[Submitted] = field(default_factory=list)

    @property
    def enqueued(self) -> list[Submitted]:
        return [item for item in self.items if not item.deduplicated]

    @property
    def deduplicated(self) -> list[Submitted]:
        return [item for item in self.items if item.deduplicated]


def submit_records(
    connection: Redis, store: ContentStore | None, records: Iterable[ScrapedRecord], ttl_s: int
) -> SubmitReport:
    """Claim each record's content hash and enqueue an LLM job for the ones this call owns.

    Without a content store (``CONTENT_STORE_ENABLED=false``) every record is enqueued.
    """
    report = SubmitReport()
    for record in records:
        digest = content_hash(record.content)
        job = LLMJob(
            prompt=record.content,
            format=OUTPUT_FORMAT,
            metadata={**record.metadata, "content_hash": digest},
        )
        outcome, job_id = _claim(connection, store, digest, job.id) if store else (Outcome.ENQUEUED, job.id)
        if outcome is Outcome.ENQUEUED:
            enqueue_llm_job(connection, job, ttl_s)
        elif store is not None:
            store.count_hit("enqueue")
        report.items.append(Submitted(job_id, record.scraper_id, record.index, digest, outcome))
    if report.items:
        connection.hincrby(keys.run_stats_key(), "records_read", len(report.items))
        connection.hincrby(keys.run_stats_key(), "deduplicated", len(report.deduplicated))
    return report


def _claim(connection: Redis, store: ContentStore, digest: str, job_id: str) -> tuple[Outcome, str]:
    entry = store.claim(digest, job_id)
    if entry.status is EntryStatus.COMPLETED:
        return Outcome.DONE, entry.job_id or job_id
    if entry.job_id == job_id:
        return Outcome.ENQUEUED, job_id
    owner = fetch_job(connection, entry.job_id) if entry.job_id else None
    if owner is not None and owner.get_status(refresh=False) in LIVE_STATES:
        return Outcome.IN_FLIGHT, owner.id
    # The owner failed for good or expired: this submission takes the content over.
    entry = store.claim(digest, job_id, steal_from=entry.job_id)
    if entry.status is EntryStatus.COMPLETED:
        return Outcome.DONE, entry.job_id or job_id
    if entry.job_id == job_id:
        return Outcome.ENQUEUED, job_id
    return Outcome.IN_FLIGHT, entry.job_id or job_id
