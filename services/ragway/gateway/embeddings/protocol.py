"""Request and response types of `POST /v1/embeddings`, in OpenAI's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ragway.gateway.core.wire import StrictModel


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class EmbeddingRequest(StrictModel):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(description="One text or up to 2048 texts.")
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > 2048 or any(not t for t in texts):
            raise ValueError("input takes 1-2048 non-empty strings")
        return texts
