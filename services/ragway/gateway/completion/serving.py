"""`POST /v1/completions`: a text prompt becomes a generation, rendered by the
chat completions renderer (text completions are its older sibling: same chunks, text instead of
messages)."""

from __future__ import annotations

import uuid

from ragway.gateway.accounts.auth import Principal
from ragway.gateway.chat_completion.serving import Wire, sampling
from ragway.gateway.completion.protocol import (
    CompletionRequest,
)
from ragway.gateway.generation.service import Generation, GenerationService


async def prepare_completion(
    service: GenerationService, principal: Principal, req: CompletionRequest
) -> tuple[Generation, Wire]:
    gen = await service.prepare_text(
        principal,
        f"cmpl-{uuid.uuid4().hex}",
        req.model,
        req.prompt,  # type: ignore[arg-type]  # the validator made it str or token ids
        sampling(req, req.logprobs),
        req.max_tokens or 16,
    )
    return gen, Wire("text_completion", req.stream, req.include_usage, req.logprobs is not None)
