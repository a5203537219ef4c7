"""Metering and money: rate limits, credit reservations, settlement, top-ups, usage summaries.

A request first *reserves* its worst-case cost with one conditional UPDATE (credits >= cost), so
concurrent requests can never overdraw; when it ends, however it ends, *settle* refunds the unused
part and writes its single usage record in the same transaction. Both steps leave ledger entries,
so the ledger always explains the balance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import InvalidArgument, NotFound
from ragway.gateway.auth import Principal
from ragway.gateway.config import Price
from ragway.gateway.errors import QuotaExceeded, RateLimited
from ragway.gateway.limiter import Limiter
from ragway.gateway.models import MICRO, ApiKey, LedgerEntry, UsageRecord, User


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
    """Count this request against the key's RPM and refuse when RPM or TPM is spent."""
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


async def count_tokens(limiter: Limiter, principal: Principal, tokens: int) -> None:
    if principal.tpm_limit is not None and tokens:
        await limiter.add(f"{principal.key_id}:tpm", tokens)


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
    date: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: int = 0  # micro-credits


async def usage_summary(session: AsyncSession, user_id: str, since: int) -> list[UsageDay]:
    """The user's usage grouped by UTC day and model, newest day first."""
    rows = await session.execute(
        select(
            UsageRecord.created_at,
            UsageRecord.model,
            UsageRecord.prompt_tokens,
            UsageRecord.completion_tokens,
            UsageRecord.cost,
        ).where(UsageRecord.user_id == user_id, UsageRecord.created_at >= since)
    )
    groups: dict[tuple[str, str], UsageDay] = {}
    for created_at, model, prompt, completion, cost in rows:
        day = datetime.fromtimestamp(created_at, UTC).strftime("%Y-%m-%d")
        group = groups.setdefault((day, model), UsageDay(day, model))
        group.requests += 1
        group.prompt_tokens += prompt
        group.completion_tokens += completion
        group.cost += cost
    return sorted(groups.values(), key=lambda g: (g.date, g.model), reverse=True)
