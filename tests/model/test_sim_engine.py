"""The simulated engine (RAGWAY_MODEL_ENGINE=sim) through the real gRPC server on port 0: the real
tokenizer and chat template, a prefix cache that reports what it reused, a batch limit, abort,
deterministic text, eviction, and a ModelInfo that says "sim". No vLLM engine starts, so these are
fast and need no engine lock.

Timings are compared only where the timing model orders them by construction (a prefill waits at
least its modelled time; a cached prompt's modelled time is a small fraction of a cold one's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import pytest
from prometheus_client import REGISTRY

from ragway.model.config import ModelSettings
from ragway.model.server import RunningModelServer, start_server
from ragway.model.sim import BLOCK_SIZE, PrefixCache, block_hashes
from ragway.model.weights import resolve_model
from ragway.v1 import model_pb2 as pb
from ragway.v1 import model_pb2_grpc
from tests.model.helpers import chat_request, collect

Stub: TypeAlias = model_pb2_grpc.ModelServiceStub
StartSim: TypeAlias = Callable[..., Awaitable[Stub]]

# A prompt of a few hundred tokens: the gap between its cold and cached prefill is wide.
LONG_QUESTION = "Tell me everything about the history of the river Thames. " * 30


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start a model service with the simulated engine (settings overridable) and return its stub."""
    servers: list[RunningModelServer] = []
    channels: list[grpc.aio.Channel] = []

    async def start(**overrides: Any) -> Stub:
        settings = ModelSettings(engine="sim", host="127.0.0.1", **overrides)
        running = await start_server(settings, port=0)
        servers.append(running)
        await asyncio.wait_for(running.engine_ready, 120)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        channels.append(channel)
        return model_pb2_grpc.ModelServiceStub(channel)

    yield start
    for channel in channels:
        await channel.close()
    for running in servers:
        await running.stop()


def text_request(text: str, **sampling: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(text=text, sampling=pb.SamplingParams(**sampling))


async def load(stub: Stub) -> pb.Load:
    reply: pb.Load = await stub.GetLoad(pb.GetLoadRequest())
    return reply


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_model_info_says_it_is_the_simulator(
    start_sim: StartSim, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ragway.model.sim"):
        stub = await start_sim()
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert (info.engine, info.engine_version, info.device) == ("sim", "ragway-sim", "sim")
    assert info.name == "SmolLM2-135M-Instruct" and info.max_model_len == 4096
    assert any(
        r.levelno == logging.WARNING
        and "simulated engine" in r.getMessage()
        and "benchmarks" in r.getMessage()
        for r in caplog.records
    )


def test_the_real_engine_stays_the_default() -> None:
    assert ModelSettings().engine == "vllm"


async def test_tokenizes_as_the_real_tokenizer_and_chat_template(start_sim: StartSim) -> None:
    from transformers import AutoTokenizer

    stub = await start_sim()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(ModelSettings()))
    text = "The Thames flows through London, past Westminster — and then? 42 bridges!"
    reply = await stub.Tokenize(pb.TokenizeRequest(text=text, add_special_tokens=True))
    assert list(reply.ids) == tokenizer.encode(text, add_special_tokens=True)

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    chat = pb.ChatInput(messages=[pb.ChatMessage(**m) for m in messages])
    reply = await stub.Tokenize(pb.TokenizeRequest(chat=chat))
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert list(reply.ids) == tokenizer.encode(rendered, add_special_tokens=False)
    detok = await stub.Detokenize(pb.DetokenizeRequest(ids=reply.ids))
    assert detok.text == rendered


async def test_a_repeated_prompt_reports_its_full_blocks_cached_and_a_faster_first_token(
    start_sim: StartSim,
) -> None:
    stub = await start_sim(sim_ttft_base_ms=5, sim_prefill_ms_per_1k_tokens=2000)
    request = chat_request(LONG_QUESTION, max_tokens=4)
    _, cold = await collect(stub, request)
    _, warm = await collect(stub, request)
    prompt_tokens = cold[-1].usage.prompt_tokens
    assert prompt_tokens > 300
    # Full blocks within all but the last prompt token, as vLLM counts a hit.
    full_blocks = (prompt_tokens - 1) // BLOCK_SIZE * BLOCK_SIZE
    assert cold[-1].usage.cached_prompt_tokens == 0
    assert warm[-1].usage.cached_prompt_tokens == full_blocks
    # A prefill takes at least its modelled time: ~600 ms cold, ~30 ms for the uncached tail.
    assert cold[-1].timings.ttft_seconds >= 2.0 * prompt_tokens / 1000
    assert warm[-1].timings.ttft_seconds < cold[-1].timings.ttft_seconds / 2
    reply = await load(stub)
    assert (reply.prefix_cache_queries, reply.prefix_cache_hits) == (2 * prompt_tokens, full_blocks)

    # A prompt that shares only the leading blocks reuses those and no more.
    _, branch = await collect(stub, chat_request(LONG_QUESTION + " And its bridges?", max_tokens=4))
    shared = branch[-1].usage.cached_prompt_tokens
    assert 0 < shared <= full_blocks and shared % BLOCK_SIZE == 0


async def test_the_same_prompt_gives_the_same_text(start_sim: StartSim) -> None:
    stub = await start_sim(sim_itl_ms=1)
    first, messages = await collect(stub, chat_request("Name a river.", max_tokens=30))
    again, _ = await collect(stub, chat_request("Name a river.", max_tokens=30, temperature=1.0))
    other, _ = await collect(stub, chat_request("Name a mountain.", max_tokens=30))
    assert first[0] and first == again and other != first
    ids = [i for m in messages for c in m.choices for i in c.token_ids]
    detok = await stub.Detokenize(pb.DetokenizeRequest(ids=ids, skip_special_tokens=True))
    assert detok.text == first[0], "the streamed text is the real tokenizer's decoding of the ids"


async def test_answers_end_by_length_or_stop_consistently(start_sim: StartSim) -> None:
    stub = await start_sim(sim_itl_ms=1, sim_output_tokens=12)

    async def finish(**sampling: Any) -> tuple[str, list[int], pb.ChoiceDelta]:
        texts, messages = await collect(stub, text_request("Once upon a time", **sampling))
        ids = [i for m in messages for c in m.choices for i in c.token_ids]
        return texts.get(0, ""), ids, messages[-1].choices[0]

    _, ids, last = await finish(max_tokens=5)
    assert len(ids) == 5 and last.finish_reason == pb.FINISH_REASON_LENGTH
    _, ids, last = await finish(max_tokens=50)
    assert len(ids) == 12 and last.finish_reason == pb.FINISH_REASON_STOP
    eos = (await stub.Tokenize(pb.TokenizeRequest(text="<|im_end|>"))).ids
    assert ids[-1] == eos[0], "a natural stop ends with EOS"
    _, ids, last = await finish(max_tokens=50, ignore_eos=True)
    assert len(ids) == 50 and last.finish_reason == pb.FINISH_REASON_LENGTH
    _, ids, last = await finish(max_tokens=50, min_tokens=20)
    assert len(ids) == 20 and last.finish_reason == pb.FINISH_REASON_STOP

    text, _, _ = await finish(max_tokens=50, ignore_eos=True)
    word = text.split()[3]
    cut, ids, last = await finish(max_tokens=50, ignore_eos=True, stop=[word])
    assert last.finish_reason == pb.FINISH_REASON_STOP and last.stop_reason == word
    assert cut == text[: text.index(word)] and len(ids) < 50


async def test_the_batch_limit_queues_the_excess_in_arrival_order(start_sim: StartSim) -> None:
    stub = await start_sim(max_num_seqs=2, sim_itl_ms=5)
    results: dict[int, list[pb.GenerateResponse]] = {}
    first_token_at: dict[int, float] = {}
    finished_at: dict[int, float] = {}

    async def run(i: int) -> None:
        messages = []
        async for message in stub.Generate(text_request(f"request {i}", max_tokens=40)):
            if any(choice.token_ids for choice in message.choices):  # not the admission message
                first_token_at.setdefault(i, time.monotonic())
            messages.append(message)
        finished_at[i] = time.monotonic()
        results[i] = messages

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(run(i)))
        await until(lambda i=i: _engine_holds(stub, i + 1))  # type: ignore[misc]

    async def two_run_one_waits() -> bool:
        reply = await load(stub)
        return (reply.running_requests, reply.waiting_requests) == (2, 1)

    await until(two_run_one_waits)
    assert REGISTRY.get_sample_value("ragway_model_engine_waiting_requests") == 1
    assert REGISTRY.get_sample_value("ragway_model_engine_running_requests") == 2
    assert 0 < REGISTRY.get_sample_value("ragway_model_kv_cache_usage_ratio") < 1  # type: ignore[operator]
    await asyncio.gather(*tasks)
    queued = [results[i][-1].timings.queue_seconds for i in range(3)]
    # The third waits until one of the first two has run its 40 steps of 5 ms: its first token
    # comes after a slot frees, and its queue time dwarfs theirs. (How long it waits depends on how
    # far the first two had got when it arrived, which a loaded machine stretches: no bound on it.)
    assert first_token_at[2] >= min(finished_at[0], finished_at[1])
    assert queued[0] < 0.1 and queued[1] < 0.1 and queued[2] > 0.02 and queued[2] > 5 * max(queued[:2])
    reply = await load(stub)
    assert (reply.running_requests, reply.waiting_requests, reply.kv_cache_usage) == (0, 0, 0.0)


async def _engine_holds(stub: Stub, count: int) -> bool:
    reply = await load(stub)
    return reply.running_requests + reply.waiting_requests >= count


async def test_cancelling_a_stream_frees_its_batch_slot(start_sim: StartSim) -> None:
    stub = await start_sim(max_num_seqs=1, sim_itl_ms=5)
    call = stub.Generate(text_request("a long story", max_tokens=2000, ignore_eos=True))
    tokens = 0
    async for message in call:
        tokens += sum(len(c.token_ids) for c in message.choices)
        if tokens >= 3:
            break
    assert (await load(stub)).running_requests == 1
    call.cancel()

    async def slot_free() -> bool:
        reply = await load(stub)
        return reply.running_requests == 0 and reply.in_flight_requests == 0

    await until(slot_free)
    assert REGISTRY.get_sample_value("ragway_model_running_requests") == 0
    assert REGISTRY.get_sample_value("ragway_model_engine_running_requests") == 0
    # The next request takes the slot at once instead of waiting out the 2,000 tokens.
    _, messages = await collect(stub, text_request("next", max_tokens=3))
    assert messages[-1].timings.queue_seconds < 0.5


async def test_the_least_recently_used_blocks_are_evicted_beyond_capacity(start_sim: StartSim) -> None:
    stub = await start_sim(sim_cache_blocks=12, sim_itl_ms=1)

    def prompt(first_id: int) -> pb.GenerateRequest:  # 90 tokens: 5 full blocks and a tail
        ids = pb.TokenIds(ids=range(first_id, first_id + 90))
        return pb.GenerateRequest(token_ids=ids, sampling=pb.SamplingParams(max_tokens=1))

    async def cached(request: pb.GenerateRequest) -> int:
        _, messages = await collect(stub, request)
        return messages[-1].usage.cached_prompt_tokens

    first, second, third = prompt(1000), prompt(2000), prompt(3000)
    assert await cached(first) == 0
    assert await cached(first) == 80
    assert await cached(second) == 0
    assert await cached(second) == 80  # 10 blocks of 12 held: both prompts still there
    assert await cached(third) == 0  # 15 > 12: the least recently used, the first prompt's, go
    assert await cached(second) == 80
    assert await cached(first) == 0
    assert (await load(stub)).prefix_cache_hits == 3 * 80


def test_prefix_cache_hashes_chain_over_full_blocks() -> None:
    tokens = list(range(40))
    hashes = block_hashes(tokens)
    assert len(hashes) == 2  # 8 trailing tokens make no block
    assert block_hashes([99, *tokens[1:]])[1] != hashes[1], "a block's hash names its whole prefix"
    cache = PrefixCache(capacity=3)
    cache.insert(hashes)
    assert cache.match(hashes) == 2
    cache.insert(block_hashes(list(range(100, 132))))
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.match(hashes) == 0, "the least recently used block went first and the chain breaks there"


async def test_each_of_n_choices_gets_its_own_text_even_beyond_the_batch(start_sim: StartSim) -> None:
    stub = await start_sim(max_num_seqs=1, sim_itl_ms=1)
    texts, messages = await collect(stub, text_request("Two ideas", max_tokens=8, n=2))
    assert set(texts) == {0, 1} and texts[0] != texts[1]
    assert messages[-1].usage.completion_tokens == 16
    ends = {c.index: c.finish_reason for m in messages for c in m.choices if c.finish_reason}
    assert ends == {0: pb.FINISH_REASON_LENGTH, 1: pb.FINISH_REASON_LENGTH}


async def test_steps_a_busy_process_missed_arrive_merged_not_lost(start_sim: StartSim) -> None:
    stub = await start_sim(sim_itl_ms=5)
    sizes: list[int] = []
    async for message in stub.Generate(text_request("a story", max_tokens=200, ignore_eos=True)):
        sizes.append(sum(len(c.token_ids) for c in message.choices))
        if len(sizes) == 3:
            time.sleep(0.3)  # noqa: ASYNC251 -- on purpose: the event loop (server and client) stalls for 60 steps
    assert sum(sizes) == 200
    # The 60 steps missed run together at once: one delta carries their tokens, as vLLM merges
    # outputs its consumer has not taken.
    assert max(sizes) >= 30


async def test_stream_interval_sends_the_first_token_alone_then_that_many_per_message(
    start_sim: StartSim,
) -> None:
    stub = await start_sim(sim_itl_ms=1, stream_interval=4)
    sizes = [
        sum(len(c.token_ids) for c in message.choices)
        async for message in stub.Generate(text_request("a story", max_tokens=18, ignore_eos=True))
    ]
    tokens = [size for size in sizes if size]  # the first message is the admission: no tokens
    assert sum(tokens) == 18
    assert tokens[0] == 1, "the first token goes at once: time to first token is not traded"
    assert all(size >= 4 for size in tokens[1:-1]) and tokens[-1] >= 1, sizes


async def test_a_failed_engine_ends_in_flight_streams_unavailable() -> None:
    running = await start_server(ModelSettings(engine="sim", host="127.0.0.1", sim_itl_ms=5), port=0)
    try:
        await asyncio.wait_for(running.engine_ready, 120)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            call = stub.Generate(text_request("a long story", max_tokens=2000, ignore_eos=True))
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                async for message in call:
                    if message.choices:
                        running.engine.fail("a test says so")
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "a test says so" in (failed.value.details() or "")
            assert running.engine.num_unfinished_requests() == 0
    finally:
        await running.stop()
