"""What every request type of the gateway's HTTP API shares: the strict base model and the
validators more than one API applies, so each rule has one definition and one error message."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# OpenAI's limits on `metadata` (chat completions, responses, vector stores).
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512


class StrictModel(BaseModel):
    """A field ragway does not know is a 400 naming it, never accepted and ignored: a client that
    relies on it must hear that it had no effect."""

    model_config = ConfigDict(extra="forbid")


def omit_none() -> Any:
    """A field OpenAI leaves out when it has no value (not one it sends as null)."""
    return Field(None, exclude_if=lambda v: v is None)


class PromptCaching(StrictModel):
    """OpenAI's prompt-caching fields, as chat completions and Responses both take them: the key
    routes a request to the replica whose prefix cache holds it (clients/replicas.py)."""

    service_tier: Literal["auto", "default"] | None = Field(None, description="One tier: the default.")
    prompt_cache_key: str | None = Field(
        None,
        min_length=1,
        max_length=1024,
        description="Requests with the same key go to the model replica whose prefix cache holds them.",
    )
    prompt_cache_retention: Literal["in_memory"] | None = Field(
        None, description="vLLM's prefix cache lives in memory; longer retention is refused."
    )


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_PAIRS or any(
        len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE for k, v in value.items()
    ):
        raise ValueError(
            f"metadata takes up to {MAX_METADATA_PAIRS} pairs, keys up to {MAX_METADATA_KEY} and "
            f"values up to {MAX_METADATA_VALUE} characters"
        )
    return value


# Key-value pairs a client stores with an object, within OpenAI's limits (a 400 beyond them, as
# OpenAI answers, rather than a row the client's SDK could not read back).
Metadata = Annotated[dict[str, str], AfterValidator(_metadata)]


class Deleted(BaseModel):
    id: str
    object: str
    deleted: bool = True
