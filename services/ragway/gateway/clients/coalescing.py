"""A generation relayed at the engine's pace when the gateway falls behind it.

A GPU engine steps every 10-20 ms for all its streams at once, and the gateway writes one SSE event
per model-service message. When one gateway process carries hundreds of streams its event loop
falls behind, and messages queue per stream in gRPC's buffers; relayed one at a time, each pays the
per-event work (the chunk, its JSON, the socket write) and the stream drifts ever further behind the
engine. `coalesced` reads each stream as fast as messages come and hands on everything that has
arrived since the consumer last asked as one message — what vLLM's `stream_interval` does with a
fixed count, done here only under backpressure: a gateway that keeps up relays every message as it
comes, one token at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable

from ragway.v1 import model_pb2


async def coalesced(
    stream: AsyncIterable[model_pb2.GenerateResponse],
) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
    """`stream`'s messages, those that queued up behind a slow consumer merged (see `merge`).

    The first message (the admission, with the prompt size) is handed on alone, as it arrives.
    Closing this generator stops reading `stream`; its errors are raised here once the messages
    before them have been handed on."""
    messages = aiter(stream)
    try:
        first = await anext(messages)
    except StopAsyncIteration:
        return
    yield first
    pending: list[model_pb2.GenerateResponse] = []
    arrived = asyncio.Event()
    done = False
    failure: Exception | None = None

    async def pump() -> None:
        nonlocal done, failure
        try:
            async for message in messages:
                pending.append(message)
                arrived.set()
        except Exception as exc:  # handed to the consumer, after what came before it
            failure = exc
        finally:
            done = True
            arrived.set()

    reader = asyncio.get_running_loop().create_task(pump(), name="generation-reader")
    try:
        while True:
            if not pending and not done:
                await arrived.wait()
                arrived.clear()
            if pending:
                batch, pending[:] = pending[:], []
                for message in merge(batch):
                    yield message
            elif done:
                if failure is not None:
                    raise failure
                return
    finally:
        reader.cancel()


def merge(batch: list[model_pb2.GenerateResponse]) -> list[model_pb2.GenerateResponse]:
    """Consecutive messages as one: each choice's text, token ids and logprobs joined in order, the
    last finish reason, usage and timings. A message with tool-call output stays apart, so a
    choice's content and its calls keep their order."""
    merged: list[model_pb2.GenerateResponse] = []
    into: model_pb2.GenerateResponse | None = None
    for message in batch:
        if any(delta.tool_calls for delta in message.choices):
            merged.append(message)
            into = None
            continue
        if into is None:
            into = model_pb2.GenerateResponse(request_id=message.request_id)
            merged.append(into)
        _absorb(into, message)
    return merged


def _absorb(into: model_pb2.GenerateResponse, message: model_pb2.GenerateResponse) -> None:
    if message.prompt_tokens:
        into.prompt_tokens = message.prompt_tokens
    for delta in message.choices:
        target = next((d for d in into.choices if d.index == delta.index), None)
        if target is None:
            into.choices.append(delta)
            continue
        target.text += delta.text
        target.token_ids.extend(delta.token_ids)
        target.logprobs.extend(delta.logprobs)
        if delta.finish_reason:
            target.finish_reason = delta.finish_reason
            target.stop_reason = delta.stop_reason
    if message.HasField("usage"):
        into.usage.CopyFrom(message.usage)
    if message.HasField("timings"):
        into.timings.CopyFrom(message.timings)
