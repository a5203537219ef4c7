"""Per-key request and token rate limits over fixed one-minute windows.

One interface, two homes for the counters: this process (one gateway) or Redis (several gateway
replicas enforce one limit together). A window's counter lives two minutes, then expires.

Requests are counted with `add`. Tokens are *reserved* before a request runs (`reserve`: its prompt
plus the most it may generate, admitted only if that fits under the limit, in one atomic step) and
*settled* when it ends (`settle`: the hold becomes the real count, the unused part is given back), so
concurrent requests cannot together overshoot a limit they each checked alone.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from ragway.gateway.core.errors import LimiterUnavailable

WINDOW_SECONDS = 60
# A limiter call is one round trip to Redis: one that takes longer than this is a Redis in trouble,
# and the request gets a 503 instead of waiting on it without end.
REDIS_TIMEOUT_SECONDS = 5.0

Method = TypeVar("Method", bound=Callable[..., Awaitable[Any]])


def _window(now: float) -> tuple[int, float]:
    index = int(now // WINDOW_SECONDS)
    return index, (index + 1) * WINDOW_SECONDS - now


@dataclass(frozen=True)
class Hold:
    """`amount` reserved on counter `name` in window `window`, until `settle` makes it the real count."""

    name: str
    window: int
    amount: int


@dataclass(frozen=True)
class Refusal:
    """A reservation that did not fit: `used` is already counted in this window."""

    used: int
    retry_after: float  # seconds until the window ends


class Limiter(Protocol):
    async def add(self, name: str, amount: int) -> tuple[int, float]:
        """Add `amount` to this window's counter; return (new total, seconds until the window ends)."""
        ...

    async def reserve(self, name: str, amount: int, limit: int) -> Hold | Refusal:
        """Add `amount` to this window's counter only if the total stays within `limit`, atomically."""
        ...

    async def settle(self, hold: Hold, used: int) -> None:
        """Turn `hold` into `used`: give back what it did not use (or count the excess) in its window.
        A window that has already expired is left alone."""
        ...

    async def close(self) -> None: ...


class LocalLimiter:
    """Counters in this process; enough for one gateway.

    No lock: every method reads and writes its counter without an await in between, so on the
    event loop each call is atomic with respect to every other request of this process.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._max = max_entries

    def _set(self, key: tuple[str, int], total: int) -> None:
        self._counts[key] = total
        self._counts.move_to_end(key)
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)

    async def add(self, name: str, amount: int) -> tuple[int, float]:
        index, remaining = _window(time.time())
        total = self._counts.get((name, index), 0) + amount
        self._set((name, index), total)
        return total, remaining

    async def reserve(self, name: str, amount: int, limit: int) -> Hold | Refusal:
        index, remaining = _window(time.time())
        used = self._counts.get((name, index), 0)
        if used + amount > limit:
            return Refusal(used, remaining)
        self._set((name, index), used + amount)
        return Hold(name, index, amount)

    async def settle(self, hold: Hold, used: int) -> None:
        key = (hold.name, hold.window)
        if key in self._counts:
            self._counts[key] = max(0, self._counts[key] + used - hold.amount)

    async def close(self) -> None:
        return None


# KEYS[1]: the window's counter. ARGV: amount, limit, ttl. Returns {1, total} or {0, used}.
_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount = tonumber(ARGV[1])
if used + amount > tonumber(ARGV[2]) then
  return {0, used}
end
local total = redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {1, total}
"""

# KEYS[1]: the hold's window counter. ARGV: the change (used - held). An expired window stays gone
# (a DECRBY on a missing key would create a negative counter without an expiry).
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local total = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if total < 0 then
  redis.call('SET', KEYS[1], 0, 'KEEPTTL')
end
return 1
"""


def _redis_errors(method: Method) -> Method:
    """Redis down, slow or refusing: the request fails as Unavailable (503), never as a 500."""
    from redis.exceptions import RedisError

    @functools.wraps(method)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable(
                f"the rate limiter's Redis is unavailable: {type(exc).__name__}"
            ) from exc

    return cast(Method, guarded)


class RedisLimiter:
    """Counters in Redis: INCRBY + EXPIRE in one round trip; reservations as Lua scripts, which
    Redis runs atomically, so replicas never interleave a check with another's increment."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    @staticmethod
    def _key(name: str, index: int) -> str:
        return f"ragway:rl:{name}:{index}"

    @_redis_errors
    async def add(self, name: str, amount: int) -> tuple[int, float]:
        index, remaining = _window(time.time())
        key = self._key(name, index)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, WINDOW_SECONDS * 2)
            total, _ = await pipe.execute()
        return int(total), remaining

    @_redis_errors
    async def reserve(self, name: str, amount: int, limit: int) -> Hold | Refusal:
        index, remaining = _window(time.time())
        admitted, total = await self._reserve(
            keys=[self._key(name, index)], args=[amount, limit, WINDOW_SECONDS * 2]
        )
        return Hold(name, index, amount) if admitted else Refusal(int(total), remaining)

    @_redis_errors
    async def settle(self, hold: Hold, used: int) -> None:
        if used != hold.amount:
            await self._settle(keys=[self._key(hold.name, hold.window)], args=[used - hold.amount])

    async def close(self) -> None:
        await self._redis.aclose()


def create_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else LocalLimiter()
