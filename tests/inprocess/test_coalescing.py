"""Relaying a generation under backpressure (gateway/clients/coalescing.py): pure logic over a
scripted message stream standing in for the gRPC call; the real relay runs in every streaming test
of the stack and in bench/relay_bench.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ragway.gateway.clients.coalescing import coalesced
from ragway.v1 import model_pb2


def token(text: str, token_id: int, index: int = 0) -> model_pb2.GenerateResponse:
    return model_pb2.GenerateResponse(
        request_id="r", choices=[model_pb2.ChoiceDelta(index=index, text=text, token_ids=[token_id])]
    )


def last(text: str, token_id: int) -> model_pb2.GenerateResponse:
    message = token(text, token_id)
    message.choices[0].finish_reason = model_pb2.FINISH_REASON_LENGTH
    message.usage.CopyFrom(model_pb2.Usage(prompt_tokens=5, completion_tokens=4))
    return message


ADMISSION = model_pb2.GenerateResponse(request_id="r", prompt_tokens=5)


async def scripted(
    messages: list[model_pb2.GenerateResponse], gap: float = 0.0
) -> AsyncIterator[model_pb2.GenerateResponse]:
    for message in messages:
        if gap:
            await asyncio.sleep(gap)
        yield message


async def test_a_consumer_that_keeps_up_gets_every_message_as_it_came() -> None:
    script = [ADMISSION, token(" a", 1), token(" b", 2), last(" c", 3)]
    got = [m async for m in coalesced(scripted(script, gap=0.01))]
    assert got == script


async def test_what_queued_behind_a_slow_consumer_arrives_as_one_message() -> None:
    script = [ADMISSION, token(" a", 1), token(" b", 2), token(" c", 3), last(" d", 4)]
    stream = coalesced(scripted(script))
    assert await anext(stream) == ADMISSION  # the admission goes on alone
    await asyncio.sleep(0.05)  # busy elsewhere: the other four arrive meanwhile
    rest = [m async for m in stream]
    assert len(rest) == 1
    (merged,) = rest
    assert merged.choices[0].text == " a b c d"
    assert list(merged.choices[0].token_ids) == [1, 2, 3, 4]
    assert merged.choices[0].finish_reason == model_pb2.FINISH_REASON_LENGTH
    assert merged.usage.completion_tokens == 4


async def test_choices_merge_each_on_its_own_and_tool_calls_keep_their_order() -> None:
    call = model_pb2.GenerateResponse(
        request_id="r",
        choices=[
            model_pb2.ChoiceDelta(
                index=0, token_ids=[9], tool_calls=[model_pb2.ToolCallDelta(index=0, arguments='{"x"')]
            )
        ],
    )
    script = [ADMISSION, token(" a", 1), token(" b", 2, index=1), token(" c", 3), call, token(" d", 4)]
    stream = coalesced(scripted(script))
    await anext(stream)
    await asyncio.sleep(0.05)
    rest = [m async for m in stream]
    assert [len(m.choices) for m in rest] == [2, 1, 1]
    assert {d.index: d.text for d in rest[0].choices} == {0: " a c", 1: " b"}
    assert rest[1] == call
    assert rest[2].choices[0].text == " d"


async def test_an_error_comes_after_the_messages_before_it() -> None:
    async def failing() -> AsyncIterator[model_pb2.GenerateResponse]:
        yield ADMISSION
        yield token(" a", 1)
        raise RuntimeError("replica lost")

    stream = coalesced(failing())
    await anext(stream)
    await asyncio.sleep(0.02)
    assert (await anext(stream)).choices[0].text == " a"
    with pytest.raises(RuntimeError, match="replica lost"):
        await anext(stream)


async def test_closing_stops_reading_the_stream() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[model_pb2.GenerateResponse]:
        try:
            yield ADMISSION
            while True:
                await asyncio.sleep(0.001)
                yield token(" a", 1)
        finally:
            closed.set()

    stream = coalesced(endless())
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), 1)
