"""Per-key request and token rate limits over fixed one-minute windows.

One interface, two homes for the counters: this process (one gateway) or Redis (several gateway
replicas enforce one limit together). A window's counter lives two minutes, then expires.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

WINDOW_SECONDS = 60


def _window(now: float) -> tuple[int, float]:
    index = int(now // WINDOW_SECONDS)
    return index, (index + 1) * WINDOW_SECONDS - now


class Limiter(Protocol):
    async def add(self, name: str, amount: int) -> tuple[int, float]:
        """Add `amount` to this window's counter; return (new total, seconds until the window ends)."""
        ...

    async def close(self) -> None: ...


class LocalLimiter:
    """Counters in this process; enough for one gateway."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._max = max_entries

    async def add(self, name: str, amount: int) -> tuple[int, float]:
        index, remaining = _window(time.time())
        key = (name, index)
        total = self._counts.get(key, 0) + amount
        self._counts[key] = total
        self._counts.move_to_end(key)
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)
        return total, remaining

    async def close(self) -> None:
        return None


class RedisLimiter:
    """Counters in Redis: INCRBY + EXPIRE in one round trip."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)

    async def add(self, name: str, amount: int) -> tuple[int, float]:
        index, remaining = _window(time.time())
        key = f"ragway:rl:{name}:{index}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, WINDOW_SECONDS * 2)
            total, _ = await pipe.execute()
        return int(total), remaining

    async def close(self) -> None:
        await self._redis.aclose()


def create_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else LocalLimiter()
