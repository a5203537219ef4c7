"""The types of `/v1/conversations`: a user's stored chat history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ragway.gateway.core.wire import StrictModel


class ConversationSummary(BaseModel):
    id: str
    title: str
    model: str
    created_at: int
    updated_at: int


class ConversationMessage(BaseModel):
    id: str
    role: str
    content: str
    created_at: int
    status: str
    finish_reason: str | None = None
    citations: list[dict[str, Any]] | None = None
    usage: dict[str, Any] | None = None
    tool_calls: list[dict[str, str]] | None = Field(None, description="Assistant turns: the calls made.")
    tool_call_id: str | None = Field(None, description="Tool turns: the call answered.")
    metadata: dict[str, str] | None = Field(None, description="The request's metadata, on the answer.")


class ConversationDetail(ConversationSummary):
    messages: list[ConversationMessage]


class ConversationList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ConversationSummary]
    has_more: bool
    last_id: str | None = None


class ConversationUpdate(StrictModel):
    title: str = Field(min_length=1, max_length=200)
