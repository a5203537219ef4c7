"""Conversations: who owns them, how they are listed, and how an exchange is recorded.

A user only ever sees their own conversations: another user's id is NotFound, never Forbidden,
so ids leak nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import NotFound
from ragway.gateway.core.tables import Conversation, Message, new_id

TITLE_CHARS = 60


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant turn made; `arguments` is a JSON object as text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Turn:
    """One message of a conversation: what the user sees and, when it differs, what the model saw."""

    role: str
    content: str
    prompt: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def sent(self) -> str:
        return self.prompt if self.prompt is not None else self.content


def _turn(m: Message) -> Turn:
    calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in m.tool_calls or [])
    return Turn(m.role, m.content, m.prompt, calls, m.tool_call_id)


def _calls(turn: Turn) -> list[dict[str, str]] | None:
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in turn.tool_calls] or None


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


async def context(
    session: AsyncSession, conversation: Conversation, until: int | None = None
) -> list[tuple[int, Turn]]:
    """The (seq, turn) pairs still sent to the model: from the context start on, failed answers out;
    with `until`, only the messages up to that seq (a branch that is read, not copied)."""
    start = conversation.context_start
    if until is not None and start > until:
        # A context start moved by a later turn says nothing about this branch: start over and let
        # prompt fitting trim it again if needed (as responses.store.continue_from does for a copy).
        start = 0
    query = select(Message).where(
        Message.conversation_id == conversation.id, Message.seq >= start, Message.status != "failed"
    )
    if until is not None:
        query = query.where(Message.seq <= until)
    rows = await session.execute(query.order_by(Message.seq))
    return [(m.seq, _turn(m)) for m in rows.scalars()]


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
    prompt: Sequence[Turn],
    answer: Turn,
    status: str,
    finish_reason: str | None,
    citations: list[dict[str, Any]] | None,
    usage: dict[str, Any] | None,
    request_id: str,
    context_start: int | None = None,
    metadata: dict[str, str] | None = None,
    response: dict[str, Any] | None = None,
) -> None:
    """Stage the new turns of one exchange (the caller commits with the usage record);
    `context_start` moves the conversation's context start when the prompt was trimmed;
    `response` is what the Responses API keeps beside the answer to rebuild its response object.

    The conversation row is created here, at the end, so a request that never reached the model
    leaves no empty conversation behind.

    Exchanges that end together on one conversation take their places in turn: the conversation's
    row is written before its last seq is read, which locks it until the caller commits (a row lock
    on PostgreSQL, the database's write lock on SQLite), so the next exchange reads the seq this
    one wrote instead of the same one.
    """
    await session.execute(
        update(Conversation).where(Conversation.id == conversation_id).values(updated_at=time.time())
    )
    conversation = await session.get(Conversation, conversation_id)
    if conversation is None:
        first_user = next((t.content for t in prompt if t.role == "user"), answer.content)
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
    for turn in prompt:
        seq += 1
        session.add(
            Message(
                conversation_id=conversation_id,
                seq=seq,
                role=turn.role,
                content=turn.content,
                prompt=turn.prompt,
                tool_calls=_calls(turn),
                tool_call_id=turn.tool_call_id,
                request_id=request_id,
            )
        )
    session.add(
        Message(
            conversation_id=conversation_id,
            seq=seq + 1,
            role="assistant",
            content=answer.content,
            tool_calls=_calls(answer),
            request_metadata=metadata,
            status=status,
            finish_reason=finish_reason,
            citations=citations,
            usage=usage,
            request_id=request_id,
            response=response,
        )
    )
    conversation.updated_at = time.time()
    conversation.model = model
    if context_start is not None:
        conversation.context_start = context_start


def new_conversation_id() -> str:
    return new_id("conv")
