"""Users and API keys: what the admin API and `ragway keys` do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import AlreadyExists, NotFound
from ragway.gateway.accounts.auth import generate_key, new_key_row
from ragway.gateway.core.tables import MICRO, ApiKey, LedgerEntry, User, now


async def create_user(session: AsyncSession, name: str, role: str, initial_credits: float) -> User:
    user = User(name=name, role=role, credits=round(initial_credits * MICRO))
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise AlreadyExists(f"a user named {name!r} exists") from exc
    if user.credits:
        session.add(
            LedgerEntry(user_id=user.id, amount=user.credits, kind="topup", balance_after=user.credits)
        )
    await session.commit()
    return user


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} not found")
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.execute(select(User).order_by(User.created_at, User.id))).scalars().all()


async def disable_user(session: AsyncSession, user_id: str) -> User:
    user = await get_user(session, user_id)
    user.disabled_at = user.disabled_at or now()
    await session.commit()
    return user


async def create_key(
    session: AsyncSession,
    user_id: str,
    *,
    name: str = "",
    expires_at: int | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    budget: float | None = None,
    budget_period: str = "month",
) -> tuple[ApiKey, str]:
    """A new key for the user: the row, and the key itself (shown once, never stored)."""
    await get_user(session, user_id)
    secret = generate_key()
    row = new_key_row(
        user_id,
        secret,
        name=name,
        expires_at=expires_at,
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        budget=None if budget is None else round(budget * MICRO),
        budget_period=budget_period,
    )
    session.add(row)
    await session.commit()
    return row, secret


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"key {key_id!r} not found")
    return row


async def list_keys(session: AsyncSession, user_id: str | None = None) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return (await session.execute(query)).scalars().all()


async def update_key(session: AsyncSession, key_id: str, changes: dict[str, Any]) -> ApiKey:
    """Apply admin changes (name, expiry, limits, budget in credits) to a key."""
    row = await get_key(session, key_id)
    if changes.get("budget") is not None:
        changes = {**changes, "budget": round(changes["budget"] * MICRO)}
    for name, value in changes.items():
        setattr(row, name, value)
    await session.commit()
    return row


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await get_key(session, key_id)
    row.revoked_at = row.revoked_at or now()
    await session.commit()
    return row


async def bootstrap_key(user_name: str, role: str, initial_credits: float) -> str:
    """For `ragway keys create`: migrate, find or create the user, mint a key, return it."""
    import asyncio

    from ragway.gateway.core import db
    from ragway.gateway.core.config import get_settings

    url = get_settings().sqlalchemy_url()
    await asyncio.to_thread(db.migrate, url)
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            user = (await session.execute(select(User).where(User.name == user_name))).scalar_one_or_none()
            if user is None:
                user = await create_user(session, user_name, role, initial_credits)
            _, secret = await create_key(session, user.id, name="created by ragway keys create")
            return secret
    finally:
        await engine.dispose()
