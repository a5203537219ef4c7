"""The caller's own account as `GET /v1/me` and `GET /v1/usage` show it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Me(BaseModel):
    id: str
    name: str
    role: str
    credits: float


class UsageDayOut(BaseModel):
    """One model on one UTC day, from the request records."""

    date: str
    model: str
    requests: int
    errors: int = Field(description="Requests that failed (not the ones the client abandoned).")
    prompt_tokens: int
    cached_tokens: int = Field(
        description="Of the prompt tokens, those the engine reused from its prefix cache (billed at "
        "the model's cached-input price)."
    )
    completion_tokens: int
    cost: float
    ttft_p50_ms: int | None = Field(description="Median time to the first token, in milliseconds.")
    ttft_p95_ms: int | None = Field(description="95th percentile time to the first token, in milliseconds.")
    output_tokens_per_second: float | None = Field(
        description="Decode speed: tokens after the first over the time from the first token to the end."
    )


class UsageOut(BaseModel):
    object: Literal["usage"] = "usage"
    credits: float
    data: list[UsageDayOut]
