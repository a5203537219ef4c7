"""The model cards of `GET /v1/models`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragway"
    root: str = Field(description="The model this id serves: itself, or the model an alias stands for.")
    max_model_len: int | None = Field(description="Context length; null while no replica answers.")
    dtype: str | None = Field(None, description="Weight dtype the model service runs.")
    engine: str | None = Field(
        None,
        description="The engine behind the model: vllm, or sim (a simulated engine for benchmarks and "
        "routing tests; its text is not a model's).",
    )
    mode: Literal["chat", "embedding"] = Field(
        "chat", description="What the model is for, as LiteLLM's model_info.mode: chat or embedding."
    )
    dimensions: int | None = Field(None, description="An embedding model's vector dimension.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
