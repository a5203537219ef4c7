"""Request and response types of `POST /v1/completions`, and the sampling fields,
usage and logprobs that chat completions share with it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ragway.gateway.core.wire import StrictModel

MAX_STOP = 4


# OpenAI parameters ragway refuses, and why: the 400 names the parameter and gives the reason.
UNSUPPORTED = {
    "audio": "audio output needs an audio model",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "ragway has no web search; use `rag` or file_search over your own documents",
    "functions": "deprecated by OpenAI; use tools",
    "function_call": "deprecated by OpenAI; use tool_choice",
    "reasoning_effort": "the served model does not reason in a separate channel",
    "verbosity": "the served model takes no verbosity setting",
    "moderation": "ragway runs no moderation model",
    "prompt_cache_options": "vLLM's prefix cache takes no per-request options",
    "best_of": "best_of is not supported; use n",
    "suffix": "insertion (suffix) is not supported by the served model",
}


class StreamOptions(StrictModel):
    include_usage: bool = False
    include_obfuscation: Literal[False] | None = Field(
        None, description="ragway never pads stream events; only false is accepted."
    )


class SamplingFields(StrictModel):
    """Sampling parameters shared by chat and text completions."""

    model: str = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    top_k: int | None = Field(None, ge=-1, le=1_000_000, description="vLLM's: keep the k likeliest tokens.")
    min_p: float | None = Field(
        None, ge=0.0, le=1.0, description="vLLM's: drop tokens below p x the top one."
    )
    repetition_penalty: float | None = Field(None, gt=0.0, le=10.0, description="vLLM's (HF-style) penalty.")
    ignore_eos: bool = Field(
        False,
        description="vLLM's: generate max_tokens past end-of-sequence (benchmarks); billed as generated.",
    )
    logit_bias: dict[str, float] | None = Field(
        None, description="Token id (as text) -> bias in [-100, 100]."
    )
    user: str | None = Field(None, max_length=256, description="End-user id, as OpenAI takes it; logged.")
    safety_identifier: str | None = Field(None, max_length=256, description="As `user`.")
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("logit_bias")
    @classmethod
    def _biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not token.isdigit() or int(token) >= 2**31:
                raise ValueError(f"logit_bias keys are token ids; {token!r} is not one")
            if not -100 <= bias <= 100:
                raise ValueError(f"logit_bias values are in [-100, 100]; got {bias}")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > MAX_STOP or any(not s for s in stops):
            raise ValueError(f"stop takes up to {MAX_STOP} non-empty strings")
        return stops

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] = Field(description="Text, a one-element list of text, or token ids.")
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: Literal[False] = Field(False, description="Echoing the prompt back is not supported.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str] | list[int]) -> str | list[int]:
        if isinstance(value, list) and value and isinstance(value[0], str):
            if len(value) != 1:
                raise ValueError("only one prompt per request is supported")
            value = value[0]
        if not value:
            raise ValueError("prompt must not be empty")
        if isinstance(value, list) and any((not isinstance(t, int)) or t < 0 for t in value):
            raise ValueError("token ids must be non-negative integers")
        return value  # type: ignore[return-value]


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class TextLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: TextLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """A text completion, and (with object "text_completion" too) one event of its stream."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
