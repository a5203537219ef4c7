"""Metering and money: rate limits, credit reservations, settlement, top-ups, usage summaries.

A request first *reserves* its worst-case cost with one conditional UPDATE (credits >= cost), so
concurrent requests can never overdraw; when it ends, however it ends, *settle* refunds the unused
part and writes its single usage record in the same transaction. Both steps leave ledger entries,
so the ledger always explains the balance. Tokens per minute go the same way in the limiter:
`hold_tokens` reserves prompt plus max tokens before the request runs, `settle_tokens` makes the hold
the real count when it ends.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument, NotFound, Unavailable
from ragway.gateway.auth import Principal
from ragway.gateway.errors import QuotaExceeded, RateLimited
from ragway.gateway.limiter import Hold, Limiter
from ragway.gateway.model_table import Price
from ragway.gateway.models import MICRO, ApiKey, LedgerEntry, UsageRecord, User

log = logging.getLogger(__name__)


def cost_micro(price: Price, prompt_tokens: int, completion_tokens: int) -> int:
    """Micro-credits for a token count (a price per million tokens is micro-credits per token)."""
    return math.ceil(prompt_tokens * price.prompt + completion_tokens * price.completion)


def credits(micro: int) -> float:
    return micro / MICRO


def period_start(period: str, at: float) -> int:
    moment = datetime.fromtimestamp(at, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(start.timestamp())


async def check_rate_limits(limiter: Limiter, principal: Principal) -> None:
    """Count this request against the key's RPM and refuse when RPM or TPM is spent — a cheap early
    refusal before anything costs; the TPM limit itself is enforced by `hold_tokens`."""
    if principal.rpm_limit is not None:
        used, retry = await limiter.add(f"{principal.key_id}:rpm", 1)
        if used > principal.rpm_limit:
            raise RateLimited(
                f"rate limit reached: {principal.rpm_limit} requests per minute for this key",
                retry_after=retry,
            )
    if principal.tpm_limit is not None:
        used, retry = await limiter.add(f"{principal.key_id}:tpm", 0)
        if used >= principal.tpm_limit:
            raise RateLimited(
                f"rate limit reached: {principal.tpm_limit} tokens per minute for this key", retry_after=retry
            )


async def hold_tokens(limiter: Limiter, principal: Principal, tokens: int) -> Hold | None:
    """Reserve the request's most tokens (prompt plus max tokens) against the key's TPM window,
    atomically across gateways; RateLimited when they do not fit. None when the key has no TPM limit."""
    if principal.tpm_limit is None:
        return None
    taken = await limiter.reserve(f"{principal.key_id}:tpm", tokens, principal.tpm_limit)
    if isinstance(taken, Hold):
        return taken
    if tokens > principal.tpm_limit:
        # No minute will ever have room: waiting does not help, a smaller request does.
        raise RateLimited(
            f"this request may use up to {tokens} tokens (prompt plus max_tokens), more than this key's "
            f"limit of {principal.tpm_limit} tokens per minute; lower max_tokens or shorten the prompt"
        )
    raise RateLimited(
        f"rate limit reached: {principal.tpm_limit} tokens per minute for this key; {taken.used} are used or "
        f"reserved this minute and this request may use up to {tokens}",
        retry_after=taken.retry_after,
    )


async def settle_tokens(limiter: Limiter, hold: Hold | None, tokens: int) -> None:
    """Make a TPM hold the request's real token count, giving back what it did not use. Never
    raises: it runs on the way out of a request whose bill must still be written, and a hold that
    cannot be settled (Redis unavailable) only over-counts its window until the window ends."""
    if hold is None:
        return
    try:
        await limiter.settle(hold, tokens)
    except Unavailable as exc:
        log.warning("TPM hold of %d tokens left as held: %s", hold.amount, exc.message)


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
    """Hold the request's maximum cost against the user's credits and the key's budget, atomically."""
    amount = cost_micro(price, prompt_tokens, max_completion_tokens)
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
    key = (
        await session.execute(
            select(ApiKey.budget, ApiKey.budget_period).where(ApiKey.id == principal.key_id)
        )
    ).one()
    if key.budget is not None:
        start = period_start(key.budget_period, time.time())
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
                f"this key's {key.budget_period}ly budget of {credits(key.budget):.6f} credits is spent",
                retry_after=None,
            )
    session.add(LedgerEntry(user_id=principal.user_id, amount=-amount, kind="reserve", request_id=request_id))
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

    The caller commits, together with whatever else describes the request (history), so a crash
    leaves either all of it or none.
    """
    cost = min(
        reservation.amount, cost_micro(reservation.price, outcome.prompt_tokens, outcome.completion_tokens)
    )
    refund = reservation.amount - cost
    if refund:
        await session.execute(
            update(User).where(User.id == reservation.user_id).values(credits=User.credits + refund)
        )
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == reservation.key_id, ApiKey.budget.is_not(None), ApiKey.period_spend >= refund)
            .values(period_spend=ApiKey.period_spend - refund)
        )
        session.add(
            LedgerEntry(
                user_id=reservation.user_id, amount=refund, kind="settle", request_id=reservation.request_id
            )
        )
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
    return usage


async def top_up(
    session: AsyncSession, user_id: str, amount: float, idempotency_key: str | None
) -> LedgerEntry:
    """Add credits once per idempotency key; a retry returns the first entry unchanged."""
    if not math.isfinite(amount) or amount <= 0 or amount > 1e9:
        raise InvalidArgument("amount must be a positive number of credits", field="amount")
    if idempotency_key:
        first = (
            await session.execute(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key))
        ).scalar_one_or_none()
        if first is not None:
            if first.user_id != user_id:
                raise InvalidArgument(
                    "this Idempotency-Key was used for another user", field="Idempotency-Key"
                )
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
    await session.commit()
    return entry


@dataclass
class UsageDay:
    """One model's usage on one UTC day, with the latency its callers saw."""

    date: str
    model: str
    requests: int = 0
    errors: int = 0  # requests that failed (the model service or the gateway), not client aborts
    prompt_tokens: int = 0
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
    for created_at, model, prompt, completion, cost, status, ttft, latency in await session.execute(query):
        day = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%d")
        group = groups.setdefault((day, model), UsageDay(day, model))
        group.requests += 1
        group.errors += status == "failed"
        group.prompt_tokens += prompt
        group.completion_tokens += completion
        group.cost += cost
        if ttft is not None:
            group.ttfts_ms.append(ttft)
            if completion > 1 and latency > ttft:
                group.decode_tokens += completion - 1
                group.decode_ms += latency - ttft
    return sorted(groups.values(), key=lambda g: (g.date, g.model), reverse=True)
