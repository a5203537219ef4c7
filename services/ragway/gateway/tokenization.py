"""`POST /tokenize` and `POST /detokenize` shaped like `vllm serve`'s: a served model's tokenizer
over HTTP (the one `model` names, else the first the caller may use), for callers that count or
build prompts themselves. Authenticated, never billed.

Options of vLLM's that ragway's model service does not offer are refused by name (the model
service always appends the assistant prefix to a chat prompt, and renders it with the model's own
template), never accepted and ignored.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ragway.gateway.auth import Principal
from ragway.gateway.generation import chat_message
from ragway.gateway.history import ToolCall, Turn
from ragway.gateway.model_router import ModelRouter
from ragway.gateway.protocol import ChatMessage, FunctionTool
from ragway.v1 import model_pb2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenizeRequest(_Strict):
    """vLLM's TokenizeCompletionRequest (`prompt`) or TokenizeChatRequest (`messages`)."""

    model: str | None = Field(None, max_length=256)
    prompt: str | None = Field(None, description="Plain text, tokenized as is.")
    messages: list[ChatMessage] | None = Field(
        None, max_length=1000, description="Chat messages, rendered with the model's chat template."
    )
    tools: list[FunctionTool] | None = Field(None, max_length=128, description="Chat: tools in the prompt.")
    add_special_tokens: bool | None = Field(
        None, description="Text: add the tokenizer's special tokens (default true). Chat: only false."
    )
    add_generation_prompt: Literal[True] = Field(
        True, description="The model service always appends the assistant prefix."
    )
    continue_final_message: Literal[False] = Field(
        False, description="The model service always starts a new assistant turn."
    )
    return_token_strs: Literal[False] | None = Field(
        None, description="Token strings are not returned; detokenize the ids you need."
    )

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send either prompt (text) or messages (chat)")
        if self.messages is not None and self.add_special_tokens:
            raise ValueError(
                "add_special_tokens: the chat template places the special tokens itself; only false"
            )
        if self.tools is not None and self.messages is None:
            raise ValueError("tools go with messages")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(_Strict):
    model: str | None = Field(None, max_length=256)
    tokens: list[int] = Field(max_length=1_000_000)

    @model_validator(mode="after")
    def _ids(self) -> DetokenizeRequest:
        if any(t < 0 or t >= 2**32 for t in self.tokens):
            raise ValueError("tokens are non-negative token ids")
        return self


class DetokenizeResponse(BaseModel):
    prompt: str


async def tokenize(models: ModelRouter, principal: Principal, req: TokenizeRequest) -> TokenizeResponse:
    route = await models.resolve(principal, req.model)
    if req.messages is not None:
        turns = [
            Turn(
                m.role if m.role != "developer" else "system",
                m.text(),
                tool_calls=tuple(
                    ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []
                ),
                tool_call_id=m.tool_call_id,
            )
            for m in req.messages
        ]
        tools = [
            model_pb2.Tool(
                name=t.function.name,
                description=t.function.description or "",
                parameters=json.dumps(t.function.parameters) if t.function.parameters is not None else "",
                strict=bool(t.function.strict),
            )
            for t in req.tools or []
        ]
        request = model_pb2.TokenizeRequest(
            chat=model_pb2.ChatInput(messages=[chat_message(t) for t in turns], tools=tools)
        )
    else:
        add = req.add_special_tokens is not False
        request = model_pb2.TokenizeRequest(text=req.prompt, add_special_tokens=add)
    reply = await route.client.tokenize(request)
    return TokenizeResponse(
        count=int(reply.count),
        max_model_len=int(reply.max_model_len or route.info.max_model_len),
        tokens=[int(i) for i in reply.ids],
    )


async def detokenize(models: ModelRouter, principal: Principal, req: DetokenizeRequest) -> DetokenizeResponse:
    route = await models.resolve(principal, req.model)
    # As vLLM's /detokenize: the ids' text, special tokens included.
    return DetokenizeResponse(prompt=await route.client.detokenize(req.tokens, skip_special_tokens=False))
