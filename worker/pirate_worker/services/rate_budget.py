"""Fleet-wide pacing to the provider's rate limits: reserve before a call, settle after it.

Every llm worker process of every pod shares one budget per provider in Redis (the hash of
:mod:`pirate_worker.contracts.rate_budget`). Each limit is a bucket refilled continuously at
``limit / 60`` per second that holds at most ``BURST_S`` seconds of refill. A call costs one
round trip before it is sent and one after:

* :meth:`RateBudget.reserve` takes the call's cost (1 request, its estimated input tokens and
  ``max_tokens`` of output, as the provider itself reserves) from every bucket the provider
  limits and answers how long to wait until the buckets cover it. Reservations queue up in the
  future (a bucket may go negative), so callers sleep exactly their turn: no polling.
* :meth:`RateBudget.settle` learns the limits and remaining amounts from the answer's rate-limit
  headers, gives back what the call reserved but did not use, and keeps moving averages of the
  use per call and the call time, which the operator reads to cap a gated role's replicas.

Until an answer has named the limits, one call at a time goes out (a short discovery lock), so a
fleet starting up does not send hundreds of calls into an unknown limit. A provider whose
answers carry no rate-limit headers (Ollama, a local server) is not paced at all. Both scripts
use Redis's clock, so pods with skewed clocks agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from redis import Redis

from pirate_worker.contracts import keys
from pirate_worker.contracts.rate_budget import DIMENSIONS, WINDOW_S

log = logging.getLogger(__name__)

#: Seconds the budget outlives the newest settle (the operator trusts it as long: a role recovering
#: from a long quota block stays capped); after that the limits are learnt again.
BUDGET_TTL_S: Final = 86_400
#: How long the discovery lock waits for the first answer before another call may try.
DISCOVERY_LOCK_S: Final = 30.0
#: How often a call re-asks while another one is discovering the limits.
DISCOVERY_POLL_S: Final = 0.2
#: Seconds of refill a bucket holds at most: a full minute's limit is never sent as one burst
#: (providers may enforce a per-minute limit over shorter intervals).
BURST_S: Final = 10.0
#: Weight of the newest call in the moving averages of use per call and call time.
EWMA_WEIGHT: Final = 0.2

#: Shared by both scripts: Redis's clock, and a limit's bucket brought up to now.
_BUCKET: Final = """
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function bucket(key, name, limit, window, burst, now)
  local rate = limit / window
  local cap = rate * burst
  local level = tonumber(redis.call('HGET', key, name .. ':level')) or cap
  local ts = tonumber(redis.call('HGET', key, name .. ':ts')) or now
  return math.min(cap, level + math.max(now - ts, 0) * rate), rate, cap
end
"""

_RESERVE: Final = (
    _BUCKET
    + """
local key, lock = KEYS[1], KEYS[2]
local max_wait, lock_ms, window, poll = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local burst = tonumber(ARGV[5])
local now = redis_now()
local known, wait, levels = false, 0, {}
for i = 6, #ARGV, 2 do
  local name, cost = ARGV[i], tonumber(ARGV[i + 1])
  local limit = tonumber(redis.call('HGET', key, name .. ':limit'))
  if limit and limit > 0 then
    known = true
    local level, rate = bucket(key, name, limit, window, burst, now)
    level = level - cost
    levels[#levels + 1] = {name, level, cost}
    if level < 0 then wait = math.max(wait, -level / rate) end
  end
end
if not known then
  if redis.call('HGET', key, 'unlimited') == '1' then return {'0', '0'} end
  if redis.call('SET', lock, '1', 'NX', 'PX', lock_ms) then return {'0', '1'} end
  return {poll, '1'}
end
if wait > max_wait then return {tostring(wait), '0'} end
local answer = {tostring(wait), '0'}
for _, entry in ipairs(levels) do
  redis.call('HSET', key, entry[1] .. ':level', entry[2], entry[1] .. ':ts', now)
  local total = redis.call('HINCRBYFLOAT', key, entry[1] .. ':reserved', entry[3])
  answer[#answer + 1] = entry[1]
  answer[#answer + 1] = total
end
return answer
"""
)

_SETTLE: Final = (
    _BUCKET
    + """
local key, lock = KEYS[1], KEYS[2]
local call_s, ttl, retry_after = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local weight, window, burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local now = redis_now()
local any_limit, exhausted = false, {}
for i = 7, #ARGV, 6 do
  local name, reserved, used = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local header_limit, header_remaining = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local reserved_before = tonumber(ARGV[i + 5])
  if header_limit and header_limit > 0 then
    redis.call('HSET', key, name .. ':limit', header_limit)
  end
  local limit = tonumber(redis.call('HGET', key, name .. ':limit'))
  if limit and limit > 0 then
    any_limit = true
    local level, rate, cap = bucket(key, name, limit, window, burst, now)
    level = level + math.max(reserved - used, 0)
    if header_remaining then
      -- The provider counted at the call's start. Since then it has refilled for the call's
      -- time, and the calls reserved after this one have taken (or will take) their share.
      local since = 0
      if reserved_before then
        since = (tonumber(redis.call('HGET', key, name .. ':reserved')) or 0) - reserved_before
      end
      level = math.min(level, header_remaining + call_s * rate - math.max(since, 0))
      if header_remaining <= 0 then exhausted[#exhausted + 1] = {name, rate} end
    end
    if retry_after > 0 and name == 'requests' and #exhausted == 0 then
      exhausted[#exhausted + 1] = {name, rate}
    end
    redis.call('HSET', key, name .. ':level', math.min(level, cap), name .. ':ts', now)
    if used > 0 then
      local avg = tonumber(redis.call('HGET', key, name .. ':used'))
      avg = avg and (avg + weight * (used - avg)) or used
      redis.call('HSET', key, name .. ':used', avg)
    end
  end
end
if retry_after > 0 then
  -- a 429: nobody goes before its retry-after
  for _, entry in ipairs(exhausted) do
    local level = tonumber(redis.call('HGET', key, entry[1] .. ':level'))
    redis.call('HSET', key, entry[1] .. ':level', math.min(level, -retry_after * entry[2]))
  end
end
if call_s > 0 then
  local avg = tonumber(redis.call('HGET', key, 'call_s'))
  avg = avg and (avg + weight * (call_s - avg)) or call_s
  redis.call('HSET', key, 'call_s', avg)
end
redis.call('HSET', key, 'updated', now, 'unlimited', any_limit and '0' or '1')
redis.call('EXPIRE', key, ttl)
redis.call('DEL', lock)
return 1
"""
)


@dataclass(frozen=True)
class Reservation:
    """What one call took from the budget, and when it may be sent."""

    cost: dict[str, float] = field(default_factory=dict)
    wait_s: float = 0.0
    #: The budget is still unknown and this call (or another) is discovering it.
    discovering: bool = False
    #: The wait was longer than the caller accepts: nothing was taken.
    refused: bool = False
    #: Per dimension, the running total of reservations including this one.
    reserved_through: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """What one answer's headers say, per dimension: the limit per minute and what remains."""

    limit: dict[str, float] = field(default_factory=dict)
    remaining: dict[str, float] = field(default_factory=dict)


def call_cost(input_tokens: int, max_tokens: int) -> dict[str, float]:
    """What a call reserves: one request, its input, and ``max_tokens`` of output."""
    return {
        "requests": 1.0,
        "tokens": float(input_tokens + max_tokens),
        "input_tokens": float(input_tokens),
        "output_tokens": float(max_tokens),
    }


def call_use(usage: Mapping[str, int]) -> dict[str, float]:
    """What a call used, from its reported usage (cache reads count towards no input limit)."""
    input_tokens = float(usage.get("input_tokens", 0) + usage.get("cache_write_tokens", 0))
    output_tokens = float(usage.get("output_tokens", 0))
    return {
        "requests": 1.0,
        "tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }


class RateBudget:
    """One provider's shared budget; thread-safe (each call is one script on the pool)."""

    def __init__(self, redis: Redis, provider: str) -> None:
        self._redis = redis
        self._key = keys.rate_budget_key(provider)
        self._lock = self._key + ":discovery"
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def reserve(self, cost: Mapping[str, float], max_wait_s: float) -> Reservation:
        """Take ``cost`` from the budget; the answer says how long to wait before sending.

        A wait longer than ``max_wait_s`` takes nothing (``refused``): the caller schedules the
        job for later instead of holding a slot.
        """
        args: list[str | float] = [
            max_wait_s,
            int(DISCOVERY_LOCK_S * 1000),
            WINDOW_S,
            DISCOVERY_POLL_S,
            BURST_S,
        ]
        for name in DIMENSIONS:
            args += [name, float(cost.get(name, 0.0))]
        wait_raw, discovering, *totals = self._reserve(keys=[self._key, self._lock], args=args)
        wait = max(float(wait_raw), 0.0)
        through = {_text(totals[i]): float(totals[i + 1]) for i in range(0, len(totals) - 1, 2)}
        return Reservation(
            cost=dict(cost),
            wait_s=wait,
            discovering=discovering in (b"1", "1"),
            refused=wait > max_wait_s,
            reserved_through=through,
        )

    def settle(
        self,
        reservation: Reservation,
        used: Mapping[str, float],
        limits: Limits,
        call_s: float,
        retry_after_s: float = 0.0,
    ) -> None:
        """Give back what the call did not use and learn from the answer's headers."""
        args: list[str | float] = [call_s, BUDGET_TTL_S, retry_after_s, EWMA_WEIGHT, WINDOW_S, BURST_S]
        for name in DIMENSIONS:
            args += [
                name,
                float(reservation.cost.get(name, 0.0)),
                float(used.get(name, 0.0)),
                _arg(limits.limit.get(name)),
                _arg(limits.remaining.get(name)),
                _arg(reservation.reserved_through.get(name)),
            ]
        self._settle(keys=[self._key, self._lock], args=args)

    def release(self) -> None:
        """Let another call discover the limits (this one ended without an answer)."""
        self._redis.delete(self._lock)


def _arg(value: float | None) -> str | float:
    return "" if value is None else value


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
