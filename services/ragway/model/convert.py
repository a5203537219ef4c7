"""Conversions between vLLM's outputs and ragway.v1 protobuf messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ragway.model.engine import EngineInfo, EngineLoad
from ragway.model.scoring import ScoreResult
from ragway.v1 import model_pb2

FINISH_REASONS = {
    "stop": model_pb2.FINISH_REASON_STOP,
    "length": model_pb2.FINISH_REASON_LENGTH,
    "abort": model_pb2.FINISH_REASON_ABORT,
}


def choice_delta(
    completion: Any,
    token_text: Callable[[int], str],
    *,
    content: str | None = None,
    tool_calls: Sequence[Any] = (),
    ended_with_tool_calls: bool = False,
) -> model_pb2.ChoiceDelta:
    """One vLLM CompletionOutput (delta mode) as a ChoiceDelta.

    With tools, vLLM's tool parser has split the text: `content` replaces it, `tool_calls` are its
    DeltaToolCalls, and `ended_with_tool_calls` turns a "stop" into FINISH_REASON_TOOL_CALLS.
    """
    delta = model_pb2.ChoiceDelta(
        index=completion.index,
        text=completion.text if content is None else content,
        token_ids=list(completion.token_ids),
        tool_calls=[tool_call_delta(call) for call in tool_calls],
    )
    if completion.logprobs:
        for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False):
            delta.logprobs.append(token_logprob(token_id, position, token_text))
    if completion.finish_reason is not None:
        delta.finish_reason = FINISH_REASONS.get(completion.finish_reason, model_pb2.FINISH_REASON_STOP)
        if completion.stop_reason is not None:
            delta.stop_reason = str(completion.stop_reason)
        if ended_with_tool_calls:
            delta.finish_reason = model_pb2.FINISH_REASON_TOOL_CALLS
    return delta


def tool_call_delta(call: Any) -> model_pb2.ToolCallDelta:
    """vLLM's DeltaToolCall (OpenAI's streamed tool call) as a ToolCallDelta."""
    function = call.function
    return model_pb2.ToolCallDelta(
        index=call.index,
        id=call.id or "",
        name=(function.name if function is not None else None) or "",
        arguments=(function.arguments if function is not None else None) or "",
    )


def token_logprob(
    token_id: int, position: dict[int, Any], token_text: Callable[[int], str]
) -> model_pb2.TokenLogprob:
    """The sampled token's logprob plus its ranked alternatives at one position."""

    def text(tid: int, entry: Any) -> str:
        return entry.decoded_token if entry.decoded_token is not None else token_text(tid)

    sampled = position[token_id]
    ranked = sorted(
        ((tid, entry) for tid, entry in position.items() if entry.rank is not None),
        key=lambda item: item[1].rank,
    )
    return model_pb2.TokenLogprob(
        token_id=token_id,
        token=text(token_id, sampled),
        logprob=sampled.logprob,
        top=[model_pb2.TopLogprob(token_id=tid, token=text(tid, e), logprob=e.logprob) for tid, e in ranked],
    )


def model_info(info: EngineInfo) -> model_pb2.ModelInfo:
    return model_pb2.ModelInfo(
        name=info.name,
        source=info.source,
        max_model_len=info.max_model_len,
        dtype=info.dtype,
        engine=info.engine,
        engine_version=info.engine_version,
        device=info.device,
        tensor_parallel_size=info.tensor_parallel_size,
        dtype_source=info.dtype_choice.source,
        dtype_reason=info.dtype_choice.reason,
        dtype_measurements=[
            model_pb2.DtypeMeasurement(
                dtype=m.dtype,
                correct=m.correct,
                detail=m.detail or m.error or (m.skipped and f"not probed: {m.skipped}"),
                prefill_ms=m.prefill_ms,
                tokens_per_s=m.tokens_per_s,
            )
            for m in info.dtype_choice.measurements
        ],
    )


def load_reply(load: EngineLoad, max_num_seqs: int, in_flight: int, max_waiting: int) -> model_pb2.Load:
    return model_pb2.Load(
        running_requests=load.running,
        waiting_requests=load.waiting,
        kv_cache_usage=load.kv_cache_usage,
        prefix_cache_queries=load.prefix_cache_queries,
        prefix_cache_hits=load.prefix_cache_hits,
        max_num_seqs=max_num_seqs,
        in_flight_requests=in_flight,
        max_waiting=max_waiting,
    )


def score_reply(result: ScoreResult) -> model_pb2.ScoreResponse:
    return model_pb2.ScoreResponse(
        scores=[
            model_pb2.PassageScore(
                index=s.index, score=s.score, prompt_tokens=s.prompt_tokens, truncated=s.truncated
            )
            for s in result.scores
        ],
        usage=model_pb2.Usage(prompt_tokens=result.prompt_tokens, cached_prompt_tokens=result.cached_tokens),
        query_tokens=result.query_tokens,
    )
