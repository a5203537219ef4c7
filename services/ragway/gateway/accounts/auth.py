"""API keys: minted once, stored as a hash, looked up by a public part, compared in constant time.

A key looks like `rgw_<43 url-safe chars>` (32 random bytes). Its first 8 random characters are
stored in clear as the lookup handle (so verifying costs one indexed SELECT, not a scan); the
rest never leaves the response that created it. Listings show `rgw_<lookup>…<last4>`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from ragway.gateway.core.errors import Unauthenticated
from ragway.gateway.core.tables import ApiKey, LedgerEntry, User, now

KEY_PREFIX = "rgw_"
_LOOKUP_CHARS = 8


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user and the key they used (limits and budgets are per key, credits per
    user). The key's budget rides along so a reservation needs no SELECT of its own; the spend is
    still checked against the row's budget atomically by the reservation's UPDATE."""

    user_id: str
    user_name: str
    role: str
    key_id: str
    rpm_limit: int | None
    tpm_limit: int | None
    budget: int | None  # micro-credits per budget_period; None: no budget
    budget_period: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # The key carries 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(key.encode()).hexdigest()


def _lookup(key: str) -> str | None:
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + _LOOKUP_CHARS + 8:
        return None
    return key[len(KEY_PREFIX) : len(KEY_PREFIX) + _LOOKUP_CHARS]


def new_key_row(user_id: str, key: str, **fields: object) -> ApiKey:
    lookup = _lookup(key)
    if lookup is None:
        raise ValueError("not a ragway key")
    return ApiKey(user_id=user_id, lookup=lookup, hash=hash_key(key), last4=key[-4:], **fields)


def display(key: ApiKey) -> str:
    return f"{KEY_PREFIX}{key.lookup}…{key.last4}"


async def authenticate(session: AsyncSession, key: str) -> Principal:
    """The principal behind `key`; Unauthenticated for unknown, revoked, expired or disabled keys."""
    lookup = _lookup(key)
    if lookup is None:
        raise Unauthenticated("invalid API key; keys look like rgw_…")
    row = (
        await session.execute(select(ApiKey).options(joinedload(ApiKey.user)).where(ApiKey.lookup == lookup))
    ).scalar_one_or_none()
    if row is None or not hmac.compare_digest(row.hash, hash_key(key)):
        raise Unauthenticated("invalid API key")
    if row.revoked_at is not None:
        raise Unauthenticated("this API key has been revoked")
    if row.expires_at is not None and row.expires_at <= now():
        raise Unauthenticated("this API key has expired")
    if row.user.disabled_at is not None:
        raise Unauthenticated("this user is disabled")
    return Principal(
        row.user_id,
        row.user.name,
        row.user.role,
        row.id,
        row.rpm_limit,
        row.tpm_limit,
        row.budget,
        row.budget_period,
    )


async def ensure_admin_key(session: AsyncSession, key: str, initial_credits: int) -> None:
    """Make `key` a working admin key (RAGWAY_ADMIN_KEY or the generated one); idempotent.

    A new admin user starts with `initial_credits` (micro-credits, booked as a top-up), so the
    first person to open a fresh stack can chat with the admin key right away.
    """
    if _lookup(key) is None:
        raise ValueError(
            f"RAGWAY_ADMIN_KEY must start with {KEY_PREFIX} and hold at least 16 random characters"
        )
    existing = (
        await session.execute(select(ApiKey).where(ApiKey.hash == hash_key(key)))
    ).scalar_one_or_none()
    if existing is not None:
        return
    admin = (await session.execute(select(User).where(User.name == "admin"))).scalar_one_or_none()
    if admin is None:
        admin = User(name="admin", role="admin", credits=initial_credits)
        session.add(admin)
        await session.flush()
        if initial_credits:
            session.add(
                LedgerEntry(
                    user_id=admin.id, amount=initial_credits, kind="topup", balance_after=initial_credits
                )
            )
    session.add(new_key_row(admin.id, key, name="bootstrap admin key"))
    await session.commit()
