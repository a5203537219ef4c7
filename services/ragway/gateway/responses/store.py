"""Where stored responses live: in the conversation history, the one table the chat API and the UI
share. A response id is the request id of an exchange; its answer is the exchange's last message.

Ownership is the conversation's: another user's response id is NotFound, exactly as another
user's conversation is, so ids leak nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import NotFound
from ragway.gateway.conversations import history
from ragway.gateway.core.tables import Conversation, Message


@dataclass(frozen=True)
class Exchange:
    """One stored response: its conversation, the turns it sent, and its answer."""

    conversation: Conversation
    prompt: Sequence[Message]
    answer: Message


async def get_exchange(
    session: AsyncSession, user_id: str, response_id: str, field: str | None = None
) -> Exchange:
    """The caller's stored response `response_id`; NotFound for anyone else's or an unstored one."""
    rows = (
        await session.execute(
            select(Message, Conversation)
            .join(Conversation, Message.conversation_id == Conversation.id)
            .where(Message.request_id == response_id, Conversation.user_id == user_id)
            .order_by(Message.seq)
        )
    ).all()
    if not rows or rows[-1][0].role != "assistant":
        raise NotFound(f"response {response_id!r} not found", field=field)
    messages = [m for m, _ in rows]
    return Exchange(rows[0][1], messages[:-1], messages[-1])


@dataclass(frozen=True)
class Continuation:
    """Where a request with `previous_response_id` reads its history (and, when stored, writes)."""

    conversation_id: str
    branched: bool = False  # a conversation made for this request: dropped if it never runs
    until: int | None = None  # read the conversation only up to this seq


async def continue_from(
    session: AsyncSession, user_id: str, response_id: str, *, stored: bool = True
) -> Continuation:
    """The conversation a request with `previous_response_id` continues.

    When the response is the newest exchange of its conversation, that conversation goes on. When
    later exchanges followed it, they belong to another branch: the history up to and including it
    is copied into a new conversation, so the branches never mix. The copies carry no request id,
    so every response id still names exactly one exchange. A request that is not `stored` writes
    nothing, so it gets no copy either (it would be left in the history list, unused): it reads the
    original conversation up to the response instead.
    """
    exchange = await get_exchange(session, user_id, response_id, field="previous_response_id")
    conversation, answer = exchange.conversation, exchange.answer
    newest = (
        await session.execute(select(func.max(Message.seq)).where(Message.conversation_id == conversation.id))
    ).scalar_one()
    if newest == answer.seq:
        return Continuation(conversation.id)
    if not stored:
        return Continuation(conversation.id, until=answer.seq)
    branch = Conversation(
        id=history.new_conversation_id(),
        user_id=user_id,
        title=conversation.title,
        model=conversation.model,
        # A context start moved by a later turn says nothing about this branch: start over and let
        # the next request's prompt fitting trim it again if needed.
        context_start=conversation.context_start if conversation.context_start <= answer.seq else 0,
    )
    session.add(branch)
    await session.flush()
    kept = await session.execute(
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.seq <= answer.seq)
        .order_by(Message.seq)
    )
    for m in kept.scalars():
        session.add(
            Message(
                conversation_id=branch.id,
                seq=m.seq,
                role=m.role,
                content=m.content,
                prompt=m.prompt,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                request_metadata=m.request_metadata,
                status=m.status,
                finish_reason=m.finish_reason,
                citations=m.citations,
                usage=m.usage,
                created_at=m.created_at,
            )
        )
    await session.commit()
    return Continuation(branch.id, branched=True)


async def drop_conversation(session: AsyncSession, user_id: str, conversation_id: str) -> None:
    """Remove a branch made for a request that then never ran."""
    await history.delete_conversation(session, user_id, conversation_id)


async def delete_exchange(session: AsyncSession, user_id: str, response_id: str) -> None:
    """Delete a stored response: its turns leave the conversation (and an emptied conversation goes)."""
    exchange = await get_exchange(session, user_id, response_id)
    conversation_id = exchange.conversation.id
    await session.execute(
        delete(Message).where(Message.conversation_id == conversation_id, Message.request_id == response_id)
    )
    left = (
        await session.execute(
            select(func.count()).select_from(Message).where(Message.conversation_id == conversation_id)
        )
    ).scalar_one()
    if not left:
        await session.delete(exchange.conversation)
    await session.commit()
