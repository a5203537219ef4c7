"""A reservation no request settled — its gateway was SIGKILLed mid-request, or the database was
down when the request ended — is settled by whichever gateway sweeps first: the hold goes back to
the user and the key's budget, the request gets its one usage record, and nothing is refunded
twice. On real SQLite and PostgreSQL; the reservation is made with billing's own call and left
unsettled, as a dead gateway leaves it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.gateway.accounts import billing
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.billing import Outcome, Reservation
from ragway.gateway.catalog.model_table import Price
from ragway.gateway.core.tables import ApiKey, UsageRecord, User
from tests.inprocess.conftest import ADMIN_KEY, InProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PRICE = Price(prompt=1000.0, completion=1000.0)  # credits per 1M tokens: 1,000 tokens hold one credit


def payer(ip: InProcess) -> Principal:
    """A user with 10 credits and a key with a monthly budget of 5."""
    user = ip.client.post("/v1/admin/users", json={"name": "orphans", "credits": 10}, headers=ADMIN).json()
    key = ip.client.post(
        "/v1/admin/keys", json={"user_id": user["id"], "budget": 5, "budget_period": "month"}, headers=ADMIN
    ).json()
    return Principal(user["id"], "orphans", "user", key["id"], None, None, 5_000_000, "month")


async def reserve(session: AsyncSession, who: Principal, request_id: str) -> Reservation:
    return await billing.reserve(
        session,
        who,
        request_id=request_id,
        model="smol",
        endpoint="chat.completions",
        price=PRICE,
        prompt_tokens=100,
        max_completion_tokens=900,
    )


@dataclass
class Books:
    credits: int
    budget_spent: int
    records: list[tuple[str, str | None, int]]


async def books(session: AsyncSession, who: Principal, request_id: str) -> Books:
    credits = (await session.execute(select(User.credits).where(User.id == who.user_id))).scalar_one()
    spent = (await session.execute(select(ApiKey.period_spend).where(ApiKey.id == who.key_id))).scalar_one()
    records = (
        await session.execute(
            select(UsageRecord.status, UsageRecord.finish_reason, UsageRecord.cost).where(
                UsageRecord.request_id == request_id
            )
        )
    ).all()
    return Books(credits, spent, [tuple(r) for r in records])  # type: ignore[misc]


def test_an_orphaned_reservation_is_released_once_and_recorded(inprocess_any_db: InProcess) -> None:
    ip = inprocess_any_db
    who = payer(ip)
    sessions = ip.client.app.state.sessions  # type: ignore[attr-defined]

    async def scenario() -> tuple[Books, list[int], bool, Books]:
        async with sessions() as session:
            reservation = await reserve(session, who, "chatcmpl-died-with-its-gateway")
            held = await books(session, who, reservation.request_id)
            sweeps = [await billing.release_orphans(session, older_than=-1) for _ in range(2)]
            # The request's own settle, arriving late, cannot refund a second time.
            try:
                await billing.settle(session, reservation, Outcome(prompt_tokens=100, completion_tokens=5))
                await session.commit()
                late_settled = True
            except IntegrityError:
                await session.rollback()
                late_settled = False
            return held, sweeps, late_settled, await books(session, who, reservation.request_id)

    held, sweeps, late_settled, after = ip.client.portal.call(scenario)  # type: ignore[union-attr]
    assert (held.credits, held.budget_spent) == (9_000_000, 1_000_000)  # one credit held
    assert sweeps == [1, 0] and not late_settled
    assert (after.credits, after.budget_spent) == (10_000_000, 0)  # the hold and the budget whole again
    assert after.records == [("failed", "orphaned", 0)]


def test_a_request_still_inside_its_deadline_is_not_an_orphan(inprocess: InProcess) -> None:
    who = payer(inprocess)
    sessions = inprocess.client.app.state.sessions  # type: ignore[attr-defined]

    async def scenario() -> int:
        async with sessions() as session:
            await reserve(session, who, "chatcmpl-still-running")
            return await billing.release_orphans(session, older_than=600)

    assert inprocess.client.portal.call(scenario) == 0  # type: ignore[union-attr]
