"""Who may touch which RAG collection, and where it lives in the retrieval service.

The retrieval service knows nothing of users: each collection is stored under a name derived
from its owner (`store_name`). A collection is visible to its owner, and to everyone when an
admin marked it shared; anyone else gets NotFound, exactly as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import AlreadyExists, InvalidArgument, NotFound
from ragway.core.limits import COLLECTION_NAME
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.core.errors import PermissionDenied
from ragway.gateway.core.tables import Collection


def check_name(name: str) -> None:
    if not COLLECTION_NAME.match(name):
        raise InvalidArgument(
            "collection names are 1-64 letters, digits, '_' or '-', starting with a letter or digit",
            field="name",
        )


def readable(principal: Principal) -> Any:
    """The SQL condition for the collections `principal` may read: its own and the shared ones."""
    return or_(Collection.user_id == principal.user_id, Collection.shared.is_(True))


async def visible(session: AsyncSession, principal: Principal) -> Sequence[Collection]:
    rows = await session.execute(select(Collection).where(readable(principal)).order_by(Collection.name))
    return rows.scalars().all()


async def get(
    session: AsyncSession, principal: Principal, name: str, *, write: bool = False, by_id: bool = False
) -> Collection:
    """The caller's collection `name` — its name, or its id as the vector-store API shows it —
    (or a shared one for reading); NotFound otherwise. `by_id`: the vector-store API, which
    knows a store by its id only (and calls it a vector store in its errors)."""
    which = Collection.id == name if by_id else or_(Collection.name == name, Collection.id == name)
    rows = (await session.execute(select(Collection).where(which, readable(principal)))).scalars().all()
    own = next((r for r in rows if r.user_id == principal.user_id), None)
    found = own or (rows[0] if rows else None)
    noun = "vector store" if by_id else "collection"
    if found is None:
        raise NotFound(f"no vector store {name!r}" if by_id else f"collection {name!r} not found")
    if write and found.user_id != principal.user_id and not principal.is_admin:
        raise PermissionDenied(f"{noun} {name!r} is shared read-only")
    return found


async def create(session: AsyncSession, principal: Principal, name: str, shared: bool) -> Collection:
    check_name(name)
    if shared and not principal.is_admin:
        raise PermissionDenied("only admins may share a collection")
    row = Collection(
        user_id=principal.user_id, name=name, store_name=f"{principal.user_id}__{name}", shared=shared
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise AlreadyExists(f"collection {name!r} exists") from exc
    return row


def expiry(row: Collection) -> None:
    """When a collection with an `expires_after` policy expires: that many days after its last
    activity (a vector store's; OpenAI's `last_active_at` anchor)."""
    if row.expires_after:
        row.expires_at = (row.last_active_at or row.created_at) + int(row.expires_after["days"]) * 86400
    else:
        row.expires_at = None


def touch(row: Collection, at: int) -> None:
    """Record activity on a collection (a search), which pushes its expiry back."""
    row.last_active_at = at
    expiry(row)
