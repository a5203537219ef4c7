"""Validate ragway.v1.SamplingParams and turn them into vLLM's SamplingParams.

Validation lives here, not in vLLM, so a bad value is INVALID_ARGUMENT naming the field (vLLM's own
errors surface as generic exceptions), and the limits match what OpenAI clients expect.
"""

from __future__ import annotations

import math
from typing import Any

from vllm import SamplingParams
from vllm.sampling_params import RequestOutputKind

from ragway.core.errors import InvalidArgument
from ragway.model.structured import structured_outputs
from ragway.v1 import model_pb2

MAX_N = 8
MAX_LOGPROBS = 20
MAX_LOGIT_BIAS = 100.0  # OpenAI's bound


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise InvalidArgument(f"{name} must be in {bracket}{low}, {high}], got {value:g}", field=name)


def check_prompt_fits(prompt_tokens: int, max_model_len: int) -> None:
    """A prompt must leave room for at least one generated token."""
    if prompt_tokens >= max_model_len:
        raise InvalidArgument(
            f"the prompt has {prompt_tokens} tokens but the model's context is {max_model_len} tokens; "
            "shorten the prompt",
            field="prompt",
        )


def _logit_bias(params: model_pb2.SamplingParams, vocab_size: int | None) -> dict[int, float] | None:
    for token_id, bias in params.logit_bias.items():
        if token_id < 0 or (vocab_size is not None and token_id >= vocab_size):
            raise InvalidArgument(
                f"logit_bias token id {token_id} is outside the vocabulary (size {vocab_size})",
                field="logit_bias",
            )
        _check_range("logit_bias", bias, -MAX_LOGIT_BIAS, MAX_LOGIT_BIAS)
    return dict(params.logit_bias) or None


def build_sampling_params(
    params: model_pb2.SamplingParams, prompt_tokens: int, max_model_len: int, vocab_size: int | None = None
) -> SamplingParams:
    """Validate every field and build streaming (delta) vLLM parameters.

    max_tokens is clamped to the room left in the context, as a client asking for "up to N"
    tokens expects, and the finish reason then says "length". A structured-output constraint is
    only checked for shape here; `Engine.verify` compiles it.
    """
    check_prompt_fits(prompt_tokens, max_model_len)
    room = max_model_len - prompt_tokens
    kwargs: dict[str, Any] = {}
    if params.HasField("n"):
        if not 1 <= params.n <= MAX_N:
            raise InvalidArgument(f"n must be between 1 and {MAX_N}, got {params.n}", field="n")
        kwargs["n"] = params.n
    if params.HasField("max_tokens"):
        if params.max_tokens < 1:
            raise InvalidArgument("max_tokens must be at least 1", field="max_tokens")
        kwargs["max_tokens"] = min(params.max_tokens, room)
    else:
        kwargs["max_tokens"] = room
    if params.HasField("temperature"):
        _check_range("temperature", params.temperature, 0.0, 2.0)
        kwargs["temperature"] = params.temperature
    if params.HasField("top_p"):
        _check_range("top_p", params.top_p, 0.0, 1.0, low_open=True)
        kwargs["top_p"] = params.top_p
    if params.HasField("top_k"):
        if params.top_k < -1:
            raise InvalidArgument(f"top_k must be -1, 0 (off) or positive, got {params.top_k}", field="top_k")
        kwargs["top_k"] = params.top_k if params.top_k > 0 else 0
    if params.HasField("min_p"):
        _check_range("min_p", params.min_p, 0.0, 1.0)
        kwargs["min_p"] = params.min_p
    for name in ("presence_penalty", "frequency_penalty"):
        if params.HasField(name):
            _check_range(name, getattr(params, name), -2.0, 2.0)
            kwargs[name] = getattr(params, name)
    if params.HasField("repetition_penalty"):
        # As vLLM takes it: any finite value above 0 (1 is off, above 1 discourages repeats).
        _check_range("repetition_penalty", params.repetition_penalty, 0.0, math.inf, low_open=True)
        if not math.isfinite(params.repetition_penalty):
            raise InvalidArgument("repetition_penalty must be finite", field="repetition_penalty")
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.HasField("logprobs"):
        if params.logprobs > MAX_LOGPROBS:
            raise InvalidArgument(f"logprobs must be at most {MAX_LOGPROBS}", field="logprobs")
        kwargs["logprobs"] = params.logprobs
    if params.HasField("seed"):
        kwargs["seed"] = params.seed
    if params.HasField("min_tokens"):
        kwargs["min_tokens"] = min(params.min_tokens, kwargs["max_tokens"])
    if any(not s for s in params.stop):
        raise InvalidArgument("stop strings must not be empty", field="stop")
    return SamplingParams(
        stop=list(params.stop) or None,
        stop_token_ids=list(params.stop_token_ids) or None,
        ignore_eos=params.ignore_eos,
        logit_bias=_logit_bias(params, vocab_size),
        structured_outputs=structured_outputs(params),
        output_kind=RequestOutputKind.DELTA,
        **kwargs,
    )
