"""Conversations: who owns them, how they are listed, and how an exchange is recorded.

A user only ever sees their own conversations: another user's id is NotFound, never Forbidden,
so ids leak nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import NotFound
from ragway.gateway.models import Conversation, Message, new_id

TITLE_CHARS = 60


async def get_conversation(session: AsyncSession, user_id: str, conversation_id: str) -> Conversation:
    row = await session.get(Conversation, conversation_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"conversation {conversation_id!r} not found")
    return row


async def get_messages(session: AsyncSession, conversation_id: str) -> Sequence[Message]:
    rows = await session.execute(
        select(Message).where(Message.conversation_id == conversation_id).order_by(Message.seq)
    )
    return rows.scalars().all()


async def list_conversations(
    session: AsyncSession, user_id: str, limit: int, after: str | None
) -> tuple[Sequence[Conversation], bool]:
    """Newest first by last activity; `after` is the last id of the previous page."""
    query = select(Conversation).where(Conversation.user_id == user_id)
    if after:
        cursor = await get_conversation(session, user_id, after)
        query = query.where(
            or_(
                Conversation.updated_at < cursor.updated_at,
                (Conversation.updated_at == cursor.updated_at) & (Conversation.id < cursor.id),
            )
        )
    rows = (
        (
            await session.execute(
                query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
            )
        )
        .scalars()
        .all()
    )
    return rows[:limit], len(rows) > limit


async def rename(session: AsyncSession, user_id: str, conversation_id: str, title: str) -> Conversation:
    row = await get_conversation(session, user_id, conversation_id)
    row.title = title
    await session.commit()
    return row


async def delete_conversation(session: AsyncSession, user_id: str, conversation_id: str) -> None:
    row = await get_conversation(session, user_id, conversation_id)
    await session.execute(delete(Message).where(Message.conversation_id == row.id))
    await session.delete(row)
    await session.commit()


def title_from(text: str) -> str:
    title = " ".join(text.split())
    return title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"


async def record_exchange(
    session: AsyncSession,
    *,
    user_id: str,
    conversation_id: str,
    model: str,
    prompt: Sequence[tuple[str, str]],
    answer: str,
    status: str,
    finish_reason: str | None,
    citations: list[dict[str, Any]] | None,
    usage: dict[str, Any] | None,
    request_id: str,
) -> None:
    """Stage the new turns of one exchange (the caller commits with the usage record).

    The conversation row is created here, at the end, so a request that never reached the model
    leaves no empty conversation behind.
    """
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        first_user = next((c for r, c in prompt if r == "user"), answer)
        conversation = Conversation(
            id=conversation_id, user_id=user_id, title=title_from(first_user), model=model
        )
        session.add(conversation)
        await session.flush()
    seq = (
        await session.execute(
            select(func.coalesce(func.max(Message.seq), 0)).where(Message.conversation_id == conversation_id)
        )
    ).scalar_one()
    for role, content in prompt:
        seq += 1
        session.add(
            Message(
                conversation_id=conversation_id, seq=seq, role=role, content=content, request_id=request_id
            )
        )
    session.add(
        Message(
            conversation_id=conversation_id,
            seq=seq + 1,
            role="assistant",
            content=answer,
            status=status,
            finish_reason=finish_reason,
            citations=citations,
            usage=usage,
            request_id=request_id,
        )
    )
    conversation.updated_at = time.time()
    conversation.model = model


def new_conversation_id() -> str:
    return new_id("conv")
