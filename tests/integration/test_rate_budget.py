"""The shared rate-limit budget's two scripts against a real redis-server (Redis's clock)."""

from __future__ import annotations

import pytest
from redis import Redis

from pirate_worker.contracts import keys
from pirate_worker.contracts.rate_budget import parse_budget
from pirate_worker.services.rate_budget import BURST_S, Limits, RateBudget, call_cost, call_use

pytestmark = pytest.mark.integration

ONE_REQUEST = {"requests": 1.0}
#: 60 requests a minute: one a second, a bucket of BURST_S requests.
PER_SECOND = Limits(limit={"requests": 60.0}, remaining={"requests": 59.0})


def learnt(budget: RateBudget, limits: Limits = PER_SECOND) -> None:
    """The first call discovers the limits and settles with them."""
    first = budget.reserve(ONE_REQUEST, 60)
    assert first.discovering and first.wait_s == 0
    budget.settle(first, ONE_REQUEST, limits, call_s=0.0)


def test_until_an_answer_names_the_limits_one_call_goes_at_a_time(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    first = budget.reserve(ONE_REQUEST, 60)
    assert first.discovering and first.wait_s == 0
    second = budget.reserve(ONE_REQUEST, 60)
    assert second.discovering and second.wait_s > 0  # polls: the limit is being learnt
    budget.settle(first, ONE_REQUEST, PER_SECOND, call_s=0.5)
    third = budget.reserve(ONE_REQUEST, 60)
    assert not third.discovering and third.wait_s == 0


def test_a_failed_discovery_lets_the_next_call_try(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    assert budget.reserve(ONE_REQUEST, 60).discovering
    budget.release()
    again = budget.reserve(ONE_REQUEST, 60)
    assert again.discovering and again.wait_s == 0


def test_answers_without_rate_limit_headers_mean_no_pacing(redis: Redis) -> None:
    budget = RateBudget(redis, "openai")
    learnt(budget, Limits())
    for _ in range(50):
        reservation = budget.reserve(call_cost(1000, 4096), 60)
        assert reservation.wait_s == 0 and not reservation.discovering


def test_reservations_beyond_the_burst_queue_up_one_refill_apart(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    learnt(budget)
    # The settle left min(burst, remaining) = BURST_S requests; they go at once.
    waits = [budget.reserve(ONE_REQUEST, 60).wait_s for _ in range(int(BURST_S) + 3)]
    assert waits[: int(BURST_S)] == pytest.approx([0.0] * int(BURST_S), abs=0.1)
    assert waits[int(BURST_S) :] == pytest.approx([1.0, 2.0, 3.0], abs=0.15)


def test_a_wait_beyond_what_the_caller_accepts_takes_nothing(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    learnt(budget)
    for _ in range(int(BURST_S) + 5):
        budget.reserve(ONE_REQUEST, 60)
    refused = budget.reserve(ONE_REQUEST, 2.0)
    assert refused.refused and refused.wait_s == pytest.approx(6.0, abs=0.15)
    # Nothing was taken: the next caller who accepts the wait gets the same turn.
    assert budget.reserve(ONE_REQUEST, 60).wait_s == pytest.approx(6.0, abs=0.15)


def test_settling_gives_back_what_the_call_reserved_but_did_not_use(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    tokens = Limits(limit={"output_tokens": 6000.0}, remaining={})  # 100 a second, bucket 1,000
    learnt(budget, tokens)
    big = budget.reserve(call_cost(100, 1000), 60)  # takes the whole bucket
    assert budget.reserve(call_cost(100, 1000), 60).wait_s == pytest.approx(10.0, abs=0.2)
    budget.settle(big, call_use({"output_tokens": 200}), tokens, call_s=0.1)  # 800 back
    assert budget.reserve(call_cost(100, 500), 60).wait_s == pytest.approx(7.0, abs=0.3)


def test_the_providers_remaining_count_lowers_the_budget_without_forgetting_later_calls(
    redis: Redis,
) -> None:
    budget = RateBudget(redis, "anthropic")
    learnt(budget)
    first = budget.reserve(ONE_REQUEST, 60)  # 9 left
    for _ in range(3):
        budget.reserve(ONE_REQUEST, 60)  # reserved after `first` started: 6 left
    # The provider says 2 remained when `first` arrived (someone else uses the same key): the
    # three calls reserved since then still count, so the budget is 2 - 3 = -1, not 2.
    budget.settle(first, ONE_REQUEST, Limits({"requests": 60.0}, {"requests": 2.0}), call_s=0.0)
    assert budget.reserve(ONE_REQUEST, 60).wait_s == pytest.approx(2.0, abs=0.15)


def test_a_429_holds_everyone_until_its_retry_after(redis: Redis) -> None:
    budget = RateBudget(redis, "anthropic")
    learnt(budget)
    refused_call = budget.reserve(ONE_REQUEST, 60)
    budget.settle(
        refused_call, ONE_REQUEST, Limits({"requests": 60.0}, {"requests": 0.0}), call_s=0.0, retry_after_s=5
    )
    assert budget.reserve(ONE_REQUEST, 60).wait_s == pytest.approx(6.0, abs=0.15)


def test_what_settles_write_is_what_the_operator_reads(redis: Redis) -> None:
    budget = RateBudget(redis, "claude")
    limits = Limits({"requests": 50.0, "input_tokens": 30000.0}, {"requests": 49.0})
    learnt(budget, limits)
    for _ in range(5):
        reservation = budget.reserve(call_cost(2000, 1000), 60)
        budget.settle(reservation, call_use({"input_tokens": 1500, "output_tokens": 300}), limits, 2.0)
    # "claude" and "anthropic" share one budget, as they share the provider state.
    seen = parse_budget(redis.hgetall(keys.rate_budget_key("anthropic")))
    assert seen is not None
    assert seen.limits == {"requests": 50.0, "input_tokens": 30000.0}
    assert seen.used_per_call["input_tokens"] == pytest.approx(1500.0)
    assert seen.call_s == pytest.approx(2.0)
    # Input tokens bind: 500/s over 1,500 per call = 1/3 call/s, times 2 s per call.
    assert seen.calls_per_second() == pytest.approx(1 / 3)
    assert seen.calls_in_flight() == pytest.approx(2 / 3)
    assert redis.ttl(keys.rate_budget_key("anthropic")) > 0
