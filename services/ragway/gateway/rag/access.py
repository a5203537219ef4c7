"""Who may touch which RAG collection, and where it lives in the retrieval service.

The retrieval service knows nothing of users: each collection is stored under a name derived
from its owner (`store_name`). A collection is visible to its owner, and to everyone when an
admin marked it shared; anyone else gets NotFound, exactly as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import AlreadyExists, InvalidArgument, NotFound
from ragway.core.limits import COLLECTION_NAME
from ragway.gateway.auth import Principal
from ragway.gateway.errors import PermissionDenied
from ragway.gateway.models import Collection


def check_name(name: str) -> None:
    if not COLLECTION_NAME.match(name):
        raise InvalidArgument(
            "collection names are 1-64 letters, digits, '_' or '-', starting with a letter or digit",
            field="name",
        )


async def visible(session: AsyncSession, principal: Principal) -> Sequence[Collection]:
    rows = await session.execute(
        select(Collection)
        .where(or_(Collection.user_id == principal.user_id, Collection.shared.is_(True)))
        .order_by(Collection.name)
    )
    return rows.scalars().all()


async def get(session: AsyncSession, principal: Principal, name: str, *, write: bool = False) -> Collection:
    """The caller's collection `name` — its name, or its id as the vector-store API shows it —
    (or a shared one for reading); NotFound otherwise."""
    rows = (
        (
            await session.execute(
                select(Collection).where(
                    or_(Collection.name == name, Collection.id == name),
                    or_(Collection.user_id == principal.user_id, Collection.shared.is_(True)),
                )
            )
        )
        .scalars()
        .all()
    )
    own = next((r for r in rows if r.user_id == principal.user_id), None)
    found = own or (rows[0] if rows else None)
    if found is None:
        raise NotFound(f"collection {name!r} not found")
    if write and found.user_id != principal.user_id and not principal.is_admin:
        raise PermissionDenied(f"collection {name!r} is shared read-only")
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
