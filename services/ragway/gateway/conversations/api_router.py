"""GET/PATCH/DELETE /v1/conversations[/{id}] — a user's own chat history."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ragway.gateway.conversations import history
from ragway.gateway.conversations.protocol import (
    ConversationDetail,
    ConversationList,
    ConversationMessage,
    ConversationSummary,
    ConversationUpdate,
)
from ragway.gateway.core.deps import CurrentPrincipal, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.core.tables import Conversation
from ragway.gateway.core.wire import Deleted

router = APIRouter(prefix="/v1/conversations", tags=["history"], route_class=StrictJsonRoute)


def _summary(row: Conversation) -> ConversationSummary:
    return ConversationSummary(
        id=row.id,
        title=row.title,
        model=row.model,
        created_at=int(row.created_at),
        updated_at=int(row.updated_at),
    )


@router.get("", response_model=ConversationList)
async def list_conversations(
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    after: str | None = Query(None, max_length=64),
) -> ConversationList:
    """The caller's conversations, most recently active first."""
    rows, has_more = await history.list_conversations(session, principal.user_id, limit, after)
    return ConversationList(
        data=[_summary(r) for r in rows], has_more=has_more, last_id=rows[-1].id if rows else None
    )


@router.get("/{conversation_id}", response_model=ConversationDetail)
async def get_conversation(
    conversation_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ConversationDetail:
    """One conversation with its messages."""
    row = await history.get_conversation(session, principal.user_id, conversation_id)
    messages = await history.get_messages(session, row.id)
    return ConversationDetail(
        **_summary(row).model_dump(),
        messages=[
            ConversationMessage(
                id=m.id,
                role=m.role,
                content=m.content,
                created_at=m.created_at,
                status=m.status,
                finish_reason=m.finish_reason,
                citations=m.citations,
                usage=m.usage,
                tool_calls=m.tool_calls,
                tool_call_id=m.tool_call_id,
                metadata=m.request_metadata,
            )
            for m in messages
        ],
    )


@router.patch("/{conversation_id}", response_model=ConversationSummary)
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, principal: CurrentPrincipal, session: SessionDep
) -> ConversationSummary:
    """Rename a conversation."""
    return _summary(await history.rename(session, principal.user_id, conversation_id, body.title))


@router.delete("/{conversation_id}", response_model=Deleted)
async def delete_conversation(
    conversation_id: str, principal: CurrentPrincipal, session: SessionDep
) -> Deleted:
    """Delete a conversation and its messages."""
    await history.delete_conversation(session, principal.user_id, conversation_id)
    return Deleted(id=conversation_id, object="conversation.deleted")
