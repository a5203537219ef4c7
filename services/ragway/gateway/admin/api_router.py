"""/v1/admin/... — users, keys, credits and usage (admin keys only)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Header, Query

from ragway.gateway.accounts import billing, users
from ragway.gateway.accounts.api_router import usage_days
from ragway.gateway.accounts.auth import display
from ragway.gateway.admin.protocol import (
    AdminUsageOut,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    KeyUpdate,
    TopUp,
    TopUpOut,
    UserCreate,
    UserList,
    UserOut,
)
from ragway.gateway.core.deps import AdminPrincipal, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.core.tables import ApiKey, User

router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=StrictJsonRoute)


def _user(row: User) -> UserOut:
    return UserOut(
        id=row.id,
        name=row.name,
        role=row.role,
        credits=billing.credits(row.credits),
        created_at=row.created_at,
        disabled=row.disabled_at is not None,
    )


def _key(row: ApiKey) -> KeyOut:
    return KeyOut(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        display=display(row),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        budget=None if row.budget is None else billing.credits(row.budget),
        budget_period=row.budget_period,
    )


@router.post("/users", response_model=UserOut, status_code=201)
async def create_user(body: UserCreate, admin: AdminPrincipal, session: SessionDep) -> UserOut:
    """Create a user with starting credits."""
    return _user(await users.create_user(session, body.name, body.role, body.credits))


@router.get("/users", response_model=UserList)
async def list_users(admin: AdminPrincipal, session: SessionDep) -> UserList:
    """Every user."""
    return UserList(data=[_user(u) for u in await users.list_users(session)])


@router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: str, admin: AdminPrincipal, session: SessionDep) -> UserOut:
    """One user."""
    return _user(await users.get_user(session, user_id))


@router.delete("/users/{user_id}", response_model=UserOut)
async def disable_user(user_id: str, admin: AdminPrincipal, session: SessionDep) -> UserOut:
    """Disable a user: every key of theirs stops working; their data stays."""
    return _user(await users.disable_user(session, user_id))


@router.post("/users/{user_id}/credits", response_model=TopUpOut)
async def top_up_credits(
    user_id: str,
    body: TopUp,
    admin: AdminPrincipal,
    session: SessionDep,
    idempotency_key: str | None = Header(None, max_length=200),
) -> TopUpOut:
    """Add credits; a retry with the same Idempotency-Key credits once and returns the first result."""
    entry = await billing.top_up(session, user_id, body.amount, idempotency_key)
    return TopUpOut(
        id=entry.id,
        user_id=entry.user_id,
        amount=billing.credits(entry.amount),
        balance=None if entry.balance_after is None else billing.credits(entry.balance_after),
        created_at=entry.created_at,
    )


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyCreate, admin: AdminPrincipal, session: SessionDep) -> KeyCreated:
    """Mint a key for a user; the response is the only place the whole key ever appears."""
    row, secret = await users.create_key(session, **body.model_dump())
    return KeyCreated(**_key(row).model_dump(), key=secret)


@router.get("/keys", response_model=KeyList)
async def list_keys(admin: AdminPrincipal, session: SessionDep, user_id: str | None = None) -> KeyList:
    """Keys, optionally of one user, shown as prefix and last four characters."""
    return KeyList(data=[_key(k) for k in await users.list_keys(session, user_id)])


@router.patch("/keys/{key_id}", response_model=KeyOut)
async def update_key(key_id: str, body: KeyUpdate, admin: AdminPrincipal, session: SessionDep) -> KeyOut:
    """Change a key's name, expiry, RPM/TPM limits or budget (fields left out stay as they are)."""
    return _key(await users.update_key(session, key_id, body.model_dump(exclude_unset=True)))


@router.delete("/keys/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: str, admin: AdminPrincipal, session: SessionDep) -> KeyOut:
    """Revoke a key at once."""
    return _key(await users.revoke_key(session, key_id))


@router.get("/usage", response_model=AdminUsageOut)
async def get_usage(
    admin: AdminPrincipal,
    session: SessionDep,
    user_id: str | None = Query(None, max_length=64),
    key_id: str | None = Query(None, max_length=64),
    days: int = Query(30, ge=1, le=366),
) -> AdminUsageOut:
    """Usage and latency by UTC day and model: of one user, one key, or (neither given) everyone."""
    since = int(time.time()) - days * 86400
    rows = await billing.usage_summary(session, since, user_id=user_id, key_id=key_id)
    return AdminUsageOut(user_id=user_id, key_id=key_id, data=usage_days(rows))
