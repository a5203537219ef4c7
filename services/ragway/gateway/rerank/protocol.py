"""`/v1/rerank` (and `/v2/rerank`) and `/v1/score` as their clients send them.

Rerank is the shape Cohere's (v1 and v2) and Jina's clients share: `model`, `query`, `documents`
(strings, or objects with `text`), `top_n`, `return_documents`; results carry `index` and
`relevance_score` (0..1, best first) and `usage`. Score is vLLM's `/v1/score`: `text_1` against
`text_2`, each a string or a list (one to one, one to many, or pairwise), `data` with `index` and
`score`.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ragway.gateway.core.wire import StrictModel


class RerankDocument(BaseModel):
    """A document as an object (Cohere v1, Jina): only `text` is read; other keys are kept."""

    model_config = ConfigDict(extra="allow")

    text: str = Field(max_length=100_000)


class RerankRequest(StrictModel):
    model: str = Field(min_length=1, max_length=256)
    query: str = Field(min_length=1, max_length=10_000)
    documents: list[str | RerankDocument] = Field(description="The texts to rank, in order.")
    top_n: int | None = Field(None, ge=1, description="Return the best top_n (default: all).")
    return_documents: bool = Field(False, description="Echo each result's document.")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, le=4096, description="Cohere v2: tokens of each document the model reads."
    )
    rank_fields: list[str] | None = Field(None, description="Cohere v1: accepted; `text` is ranked.")
    max_chunks_per_doc: int | None = Field(None, ge=1, description="Cohere v1: accepted, unused.")

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RerankMeta(BaseModel):
    """Cohere's `meta`: what was billed."""

    billed_units: dict[str, int]


class RerankResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"rerank-{uuid.uuid4().hex}")
    model: str
    results: list[RerankResult]
    usage: RerankUsage
    meta: RerankMeta


class ScoreRequest(StrictModel):
    model: str = Field(min_length=1, max_length=256)
    text_1: str | list[str] = Field(description="The query, or one query per text_2 entry.")
    text_2: str | list[str] = Field(description="The texts to score against text_1.")
    truncate_prompt_tokens: int | None = Field(None, ge=1, le=4096, description="Tokens of each text_2 read.")
    user: str | None = None


class ScoreData(BaseModel):
    index: int
    object: Literal["score"] = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"score-{uuid.uuid4().hex}")
    object: Literal["list"] = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[ScoreData]
    usage: RerankUsage
