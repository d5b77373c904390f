"""Content-hash deduplication stores: the same behaviour for the Redis and SQLite backends."""

from __future__ import annotations

import pytest

from pirate_worker.errors import InputError
from pirate_worker.services.content_store import (
    EntryStatus,
    RedisContentStore,
    SqliteContentStore,
    content_hash,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=["redis", "sqlite"])
def store(request, redis, tmp_path):
    if request.param == "redis":
        return RedisContentStore(redis, pending_ttl_s=600)
    return SqliteContentStore(tmp_path / "store.sqlite")


def test_claim_complete_and_hits(store):
    digest = content_hash('{"org_name":"A"}')
    first = store.claim(digest, "job-1")
    assert (first.status, first.job_id) == (EntryStatus.PENDING, "job-1")
    second = store.claim(digest, "job-2")
    assert second.job_id == "job-1"  # the first claim owns the content
    store.complete(digest, "job-1", {"text": "{}", "model": "rules-v1"})
    done = store.get(digest)
    assert done.status is EntryStatus.COMPLETED
    assert done.result == {"text": "{}", "model": "rules-v1"}
    store.count_hit("enqueue")
    store.count_hit("processing")
    stats = store.stats()
    assert (stats.entries, stats.completed, stats.pending) == (1, 1, 0)
    assert (stats.enqueue_hits, stats.processing_hits) == (1, 1)


def test_a_dead_owner_can_be_replaced_but_only_by_name(store):
    digest = content_hash("x")
    store.claim(digest, "job-1")
    assert store.claim(digest, "job-3", steal_from="job-2").job_id == "job-1"
    assert store.claim(digest, "job-3", steal_from="job-1").job_id == "job-3"


@pytest.mark.parametrize("bad", ["../etc/passwd", "A" * 64, "abc", "g" * 64, "0" * 63 + "\n", ""])
def test_hostile_hashes_are_rejected(store, bad):
    with pytest.raises(InputError, match="invalid content hash"):
        store.get(bad)
    with pytest.raises(InputError):
        store.claim(bad, "job")


def test_hash_is_sha256_of_the_exact_content():
    assert content_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
