"""Metering and money: rate limits, credit reservations, settlement, top-ups, usage summaries.

A request first *reserves* its worst-case cost with one conditional UPDATE (credits >= cost), so
concurrent requests can never overdraw; when it ends, however it ends, *settle* refunds the unused
part and writes its single usage record in the same transaction. Both steps leave ledger entries,
so the ledger always explains the balance.

These are the money's primitives. Requests do not call them: `metering` is the one path every
request that spends tokens takes (rate limits, the TPM hold, this reservation and its settlement).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument, NotFound
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.limiter import Hold
from ragway.gateway.catalog.model_table import Price
from ragway.gateway.core.errors import QuotaExceeded
from ragway.gateway.core.tables import MICRO, ApiKey, LedgerEntry, UsageRecord, User

log = logging.getLogger(__name__)


def cost_micro(price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
    """Micro-credits for a token count (a price per million tokens is micro-credits per token).
    `cached_tokens` of the prompt tokens the engine reused from its prefix cache are billed at the
    cached-input price (the prompt price when the model has none)."""
    cached = min(cached_tokens, prompt_tokens)
    cached_price = price.prompt if price.cached_prompt is None else price.cached_prompt
    return math.ceil(
        (prompt_tokens - cached) * price.prompt + cached * cached_price + completion_tokens * price.completion
    )


def credits(micro: int) -> float:
    return micro / MICRO


def period_start(period: str, at: float) -> int:
    moment = datetime.fromtimestamp(at, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp())


@dataclass
class Reservation:
    request_id: str
    user_id: str
    key_id: str
    model: str
    endpoint: str
    amount: int  # micro-credits held
    price: Price
    started: float
    tokens: Hold | None = None  # the key's TPM hold, settled with the bill


async def reserve(
    session: AsyncSession,
    principal: Principal,
    *,
    request_id: str,
    model: str,
    endpoint: str,
    price: Price,
    prompt_tokens: int,
    max_completion_tokens: int,
) -> Reservation:
    """Hold the request's maximum cost against the user's credits and the key's budget, atomically.

    The rows every request of a user (and of a key) updates are updated last, right before the
    commit: each stays locked from its UPDATE to the COMMIT, every request of that user waits on
    it meanwhile, and on a gateway carrying hundreds of streams each round trip in between waits
    its turn in a busy event loop (measured: 256 streams of one key queued ~8 s for the lock)."""
    amount = cost_micro(price, prompt_tokens, max_completion_tokens)
    session.add(
        LedgerEntry(
            user_id=principal.user_id,
            amount=-amount,
            kind="reserve",
            request_id=request_id,
            key_id=principal.key_id,
            model=model,
            endpoint=endpoint,
        )
    )
    await session.flush()
    held = await session.execute(
        update(User)
        .where(User.id == principal.user_id, User.credits >= amount)
        .values(credits=User.credits - amount)
    )
    if held.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        balance = (
            await session.execute(select(User.credits).where(User.id == principal.user_id))
        ).scalar_one()
        raise QuotaExceeded(
            f"insufficient credits: this request may cost up to {credits(amount):.6f} credits "
            f"and the balance is {credits(balance):.6f}; lower max_tokens or top up"
        )
    if principal.budget is not None:
        start = period_start(principal.budget_period, time.time())
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == principal.key_id, ApiKey.period_start < start)
            .values(period_start=start, period_spend=0)
        )
        within = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == principal.key_id, ApiKey.period_spend + amount <= ApiKey.budget)
            .values(period_spend=ApiKey.period_spend + amount)
        )
        if within.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            raise QuotaExceeded(
                f"this key's {principal.budget_period}ly budget of {credits(principal.budget):.6f} "
                "credits is spent",
                retry_after=None,
            )
    await session.commit()
    return Reservation(
        request_id, principal.user_id, principal.key_id, model, endpoint, amount, price, time.time()
    )


@dataclass
class Outcome:
    """How a metered request ended."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    status: str = "ok"  # ok | aborted | failed
    finish_reason: str | None = None
    ttft_ms: int | None = None
    conversation_id: str | None = None


async def settle(session: AsyncSession, reservation: Reservation, outcome: Outcome) -> UsageRecord:
    """Refund the unused part of the reservation and stage the request's one usage record.

    The caller commits next, together with whatever else describes the request (history, written
    before this so the user's row is locked only from here to the commit), so a crash leaves
    either all of it or none. A request already settled fails on its unique usage record, at the
    flush here or at the commit.
    """
    cost = min(
        reservation.amount,
        cost_micro(
            reservation.price, outcome.prompt_tokens, outcome.completion_tokens, outcome.cached_tokens
        ),
    )
    refund = reservation.amount - cost
    usage = UsageRecord(
        request_id=reservation.request_id,
        user_id=reservation.user_id,
        key_id=reservation.key_id,
        model=reservation.model,
        endpoint=reservation.endpoint,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        cached_tokens=outcome.cached_tokens,
        cost=cost,
        status=outcome.status,
        finish_reason=outcome.finish_reason,
        latency_ms=int((time.time() - reservation.started) * 1000),
        ttft_ms=outcome.ttft_ms,
        conversation_id=outcome.conversation_id,
    )
    session.add(usage)
    if refund:
        session.add(
            LedgerEntry(
                user_id=reservation.user_id, amount=refund, kind="settle", request_id=reservation.request_id
            )
        )
    if not refund:
        return usage
    # Inserted first, the user's and key's rows last (see `reserve`): the caller commits next.
    await session.flush()
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == reservation.key_id, ApiKey.budget.is_not(None), ApiKey.period_spend >= refund)
        .values(period_spend=ApiKey.period_spend - refund)
    )
    await session.execute(
        update(User).where(User.id == reservation.user_id).values(credits=User.credits + refund)
    )
    return usage


async def release_orphans(session: AsyncSession, older_than: float, limit: int = 100) -> int:
    """Settle reservations whose request never settled — its gateway was killed, or the database
    was down when it ended — as failed requests costing nothing: the hold goes back to the user
    and the key's budget, and the request gets its one usage record (status failed, reason
    orphaned). Run by every gateway; a reservation settled twice is impossible, because the usage
    record is unique per request and is written in the same transaction as the refund (of two
    gateways, or a late settle and this, one commits and the other rolls back). `older_than`
    (seconds) must exceed the longest a request can run. How many it settled."""
    cutoff = int(time.time() - older_than)
    settled = (
        select(UsageRecord.id).where(UsageRecord.request_id == LedgerEntry.request_id).correlate(LedgerEntry)
    )
    orphans = (
        (
            await session.execute(
                select(LedgerEntry)
                .where(LedgerEntry.kind == "reserve", LedgerEntry.created_at < cutoff, ~exists(settled))
                .order_by(LedgerEntry.id)
                .limit(limit)
            )
        )
        .scalars()
        .all()
    )
    released = 0
    for entry in [(e.user_id, e.request_id, -e.amount, e.key_id, e.model, e.endpoint) for e in orphans]:
        user_id, request_id, amount, key_id, model, endpoint = entry
        assert request_id is not None
        reservation = Reservation(
            request_id,
            user_id,
            key_id or "",
            model or "unknown",
            endpoint or "unknown",
            amount,
            Price(),
            time.time(),
        )
        try:
            await settle(session, reservation, Outcome(status="failed", finish_reason="orphaned"))
            await session.commit()
            released += 1
        except IntegrityError:
            await session.rollback()  # settled meanwhile, by its own request or another gateway
    if released:
        log.warning("settled %d orphaned reservations (their gateway died or lost its database)", released)
    return released


async def top_up(
    session: AsyncSession, user_id: str, amount: float, idempotency_key: str | None
) -> LedgerEntry:
    """Add credits once per idempotency key; a retry returns the first entry unchanged."""
    if not math.isfinite(amount) or amount <= 0 or amount > 1e9:
        raise InvalidArgument("amount must be a positive number of credits", field="amount")
    if idempotency_key:
        first = await _first_top_up(session, user_id, idempotency_key)
        if first is not None:
            return first
    micro = round(amount * MICRO)
    result = await session.execute(
        update(User).where(User.id == user_id).values(credits=User.credits + micro).returning(User.credits)
    )
    balance = result.scalar_one_or_none()
    if balance is None:
        raise NotFound(f"user {user_id} not found")
    entry = LedgerEntry(
        user_id=user_id, amount=micro, kind="topup", idempotency_key=idempotency_key, balance_after=balance
    )
    session.add(entry)
    try:
        await session.commit()
    except IntegrityError:
        # Retries that arrive together all pass the look-up above before any of them commits; the
        # unique index on the key lets one in. The others undo their credit and answer with its entry.
        await session.rollback()
        first = await _first_top_up(session, user_id, idempotency_key) if idempotency_key else None
        if first is None:
            raise
        return first
    return entry


async def _first_top_up(session: AsyncSession, user_id: str, idempotency_key: str) -> LedgerEntry | None:
    """The top-up already made with this Idempotency-Key, if any; refused for another user's key."""
    first = (
        await session.execute(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key))
    ).scalar_one_or_none()
    if first is not None and first.user_id != user_id:
        raise InvalidArgument("this Idempotency-Key was used for another user", field="Idempotency-Key")
    return first


@dataclass
class UsageDay:
    """One model's usage on one UTC day, with the latency its callers saw."""

    date: str
    model: str
    requests: int = 0
    errors: int = 0  # requests that failed (the model service or the gateway), not client aborts
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, those the engine reused from its prefix cache
    completion_tokens: int = 0
    cost: int = 0  # micro-credits
    ttfts_ms: list[int] = field(default_factory=list)
    decode_tokens: int = 0  # completion tokens after the first, over...
    decode_ms: int = 0  # ...the time from the first token to the end

    @property
    def ttft_p50_ms(self) -> int | None:
        return percentile(self.ttfts_ms, 50)

    @property
    def ttft_p95_ms(self) -> int | None:
        return percentile(self.ttfts_ms, 95)

    @property
    def output_tokens_per_second(self) -> float | None:
        """Decode speed over the day: tokens after the first over the time they took, summed over
        requests (so long answers weigh more than one-token ones, whose decode time is nothing)."""
        return round(self.decode_tokens * 1000 / self.decode_ms, 2) if self.decode_ms > 0 else None


def percentile(values: list[int], p: float) -> int | None:
    """The nearest-rank percentile (a value that occurred), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def usage_summary(
    session: AsyncSession, since: int, *, user_id: str | None = None, key_id: str | None = None
) -> list[UsageDay]:
    """Usage grouped by UTC day and model, newest day first: of one user, one key, or everyone.

    Percentiles are computed here over the day's records rather than in SQL: SQLite has no
    percentile function, and a day of one user's records is small enough to sort.
    """
    query = select(
        UsageRecord.created_at,
        UsageRecord.model,
        UsageRecord.prompt_tokens,
        UsageRecord.cached_tokens,
        UsageRecord.completion_tokens,
        UsageRecord.cost,
        UsageRecord.status,
        UsageRecord.ttft_ms,
        UsageRecord.latency_ms,
    ).where(UsageRecord.created_at >= since)
    if user_id is not None:
        query = query.where(UsageRecord.user_id == user_id)
    if key_id is not None:
        query = query.where(UsageRecord.key_id == key_id)
    groups: dict[tuple[str, str], UsageDay] = {}
    for created_at, model, prompt, cached, completion, cost, status, ttft, latency in await session.execute(
        query
    ):
        day = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%d")
        group = groups.setdefault((day, model), UsageDay(day, model))
        group.requests += 1
        group.errors += status == "failed"
        group.prompt_tokens += prompt
        group.cached_tokens += cached
        group.completion_tokens += completion
        group.cost += cost
        if ttft is not None:
            group.ttfts_ms.append(ttft)
            if completion > 1 and latency > ttft:
                group.decode_tokens += completion - 1
                group.decode_ms += latency - ttft
    return sorted(groups.values(), key=lambda g: (g.date, g.model), reverse=True)
