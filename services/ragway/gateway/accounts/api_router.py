"""GET /v1/me and GET /v1/usage — the caller's own account."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query
from sqlalchemy import select

from ragway.gateway.accounts import billing
from ragway.gateway.accounts.protocol import Me, UsageDayOut, UsageOut
from ragway.gateway.core.deps import CurrentPrincipal, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.core.tables import User

router = APIRouter(prefix="/v1", tags=["account"], route_class=StrictJsonRoute)


async def _balance(session: SessionDep, user_id: str) -> float:
    micro = (await session.execute(select(User.credits).where(User.id == user_id))).scalar_one()
    return billing.credits(micro)


@router.get("/me", response_model=Me)
async def get_me(principal: CurrentPrincipal, session: SessionDep) -> Me:
    """Who the key belongs to and the credits left."""
    return Me(
        id=principal.user_id,
        name=principal.user_name,
        role=principal.role,
        credits=await _balance(session, principal.user_id),
    )


def usage_days(rows: list[billing.UsageDay]) -> list[UsageDayOut]:
    """Usage groups as the API shows them (credits, not micro-credits)."""
    return [
        UsageDayOut(
            date=r.date,
            model=r.model,
            requests=r.requests,
            errors=r.errors,
            prompt_tokens=r.prompt_tokens,
            cached_tokens=r.cached_tokens,
            completion_tokens=r.completion_tokens,
            cost=billing.credits(r.cost),
            ttft_p50_ms=r.ttft_p50_ms,
            ttft_p95_ms=r.ttft_p95_ms,
            output_tokens_per_second=r.output_tokens_per_second,
        )
        for r in rows
    ]


@router.get("/usage", response_model=UsageOut)
async def get_usage(
    principal: CurrentPrincipal,
    session: SessionDep,
    days: int = Query(30, ge=1, le=366),
    key_id: str | None = Query(None, max_length=64, description="Only this key of the caller's."),
) -> UsageOut:
    """The caller's usage and latency by UTC day and model (optionally of one of their keys), and the
    credits left."""
    since = int(time.time()) - days * 86400
    rows = await billing.usage_summary(session, since, user_id=principal.user_id, key_id=key_id)
    return UsageOut(credits=await _balance(session, principal.user_id), data=usage_days(rows))
