"""Provider auth/quota state keys (DESIGN §4) against a real Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pirate_worker.contracts import keys
from pirate_worker.contracts.provider_state import ProviderCondition, parse_document
from pirate_worker.services.provider_state import BackoffPolicy, ProviderStateStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(redis):
    return ProviderStateStore(redis, "anthropic", BackoffPolicy())


def test_backoff_schedule_over_five_consecutive_hits(store, redis):
    delays = []
    for _ in range(5):
        doc = store.record_quota_exceeded("credit balance too low", NOW)
        delays.append(doc.retry_after)
        assert doc.retry_at == NOW + timedelta(seconds=doc.retry_after)
    assert delays == [3600, 5400, 8100, 12150, 14400]
    stored = json.loads(redis.get("claude:quota:status"))
    assert stored["status"] == "quota_exceeded"
    assert stored["retry_after"] == 14400
    assert set(stored) == {"status", "message", "timestamp", "retry_at", "retry_after"}
    assert 14400 + 60 - 2 <= redis.ttl("claude:quota:status") <= 14400 + 60


def test_a_reset_time_named_by_the_provider_wins(store):
    reset = NOW + timedelta(seconds=1234)
    doc = store.record_quota_exceeded("rate limited", NOW, retry_at=reset)
    assert doc.retry_at == reset
    assert doc.retry_after == 1234


def test_auth_wins_and_success_clears_both(store, redis):
    store.record_quota_exceeded("quota", NOW)
    store.record_auth_failed("bad key", NOW)
    state = store.current(NOW + timedelta(seconds=10))
    assert state.condition is ProviderCondition.AUTH_FAILED
    assert state.retry_at == NOW + timedelta(seconds=300)
    # After the auth block lapses the quota block (1 h) still holds.
    assert store.current(NOW + timedelta(seconds=301)).condition is ProviderCondition.QUOTA_EXCEEDED
    store.record_success(NOW)
    assert redis.get("claude:quota:status") is None
    assert redis.get("claude:auth:status") is None
    check = json.loads(redis.get("claude:last:check"))
    assert check["status"] == "healthy"
    assert 3590 <= redis.ttl("claude:last:check") <= 3600
    # A success also resets the backoff exponent.
    assert store.record_quota_exceeded("quota", NOW).retry_after == 3600


def test_expired_block_means_probing_and_one_probe_at_a_time(store):
    store.record_quota_exceeded("quota", NOW, retry_at=NOW + timedelta(seconds=5))
    assert store.current(NOW + timedelta(seconds=6)).condition is ProviderCondition.PROBING
    assert store.try_probe("worker-a", 60)
    assert not store.try_probe("worker-b", 60)
    store.release_probe("worker-b")  # not the owner: nothing happens
    assert not store.try_probe("worker-b", 60)
    store.release_probe("worker-a")
    assert store.try_probe("worker-b", 60)


def test_other_providers_use_their_own_prefix(redis):
    openai = ProviderStateStore(redis, "openai", BackoffPolicy())
    openai.record_auth_failed("401", NOW)
    assert parse_document(redis.get(keys.auth_status_key("openai"))).status == "auth_failed"
    assert redis.get("claude:auth:status") is None
