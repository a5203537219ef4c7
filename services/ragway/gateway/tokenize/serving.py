"""`POST /tokenize` and `POST /detokenize` shaped like `vllm serve`'s: a served model's tokenizer
over HTTP (the one `model` names, else the first the caller may use), for callers that count or
build prompts themselves. Authenticated, never billed.

Options of vLLM's that ragway's model service does not offer are refused by name (the model
service always appends the assistant prefix to a chat prompt, and renders it with the model's own
template), never accepted and ignored."""

from __future__ import annotations

from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.model_router import ModelRouter
from ragway.gateway.chat_completion.serving import chat_turns, function_tools
from ragway.gateway.clients.model import Chat
from ragway.gateway.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)


async def tokenize(models: ModelRouter, principal: Principal, req: TokenizeRequest) -> TokenizeResponse:
    route = await models.resolve(principal, req.model)
    if req.messages is not None:
        system, turns = chat_turns(req.messages)
        reply = await route.client.tokenize(Chat([*system, *turns], function_tools(req.tools)))
    else:
        assert req.prompt is not None  # the validator takes one of prompt and messages
        reply = await route.client.tokenize(req.prompt, req.add_special_tokens is not False)
    return TokenizeResponse(
        count=reply.count,
        max_model_len=reply.max_model_len or route.info.max_model_len,
        tokens=reply.ids,
    )


async def detokenize(models: ModelRouter, principal: Principal, req: DetokenizeRequest) -> DetokenizeResponse:
    route = await models.resolve(principal, req.model)
    # As vLLM's /detokenize: the ids' text, special tokens included.
    return DetokenizeResponse(prompt=await route.client.detokenize(req.tokens, skip_special_tokens=False))
