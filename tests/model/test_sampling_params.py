"""top_k, min_p, repetition_penalty, logit_bias and seed reach the real engine and change what it samples."""

from __future__ import annotations

import grpc
import pytest

from ragway.v1 import model_pb2 as pb
from tests.model.helpers import chat_request, collect

QUESTION = "Invent a name for a pet and say why."


async def greedy(stub, question: str = QUESTION, max_tokens: int = 24, **sampling: object) -> str:  # type: ignore[no-untyped-def]
    texts, _ = await collect(stub, chat_request(question, max_tokens=max_tokens, temperature=0, **sampling))
    return texts[0]


async def sampled(  # type: ignore[no-untyped-def]
    stub, seed: int, question: str = QUESTION, max_tokens: int = 24, **sampling: object
) -> str:
    texts, _ = await collect(
        stub, chat_request(question, max_tokens=max_tokens, temperature=1.5, seed=seed, **sampling)
    )
    return texts[0]


async def test_top_k_one_and_min_p_one_sample_the_greedy_text(stub) -> None:  # type: ignore[no-untyped-def]
    """top_k=1 and min_p=1 keep only the likeliest token at each step: the seed no longer matters and
    the text is the greedy one, where hot sampling without them wanders. Asked on a question whose
    answer the model is sure of: on an open one, bfloat16's ~3 significant digits make two tokens
    tie exactly now and then ("cat" / "feline"), and both survive either limit."""
    question, length = "What is the capital of France?", 10
    expected = await greedy(stub, question, max_tokens=length)
    free = {await sampled(stub, seed, question, max_tokens=length) for seed in (1, 2, 3)}
    assert free != {expected}, "hot sampling without limits should wander from the greedy text"
    for limit in ({"top_k": 1}, {"min_p": 1.0}):
        texts = {await sampled(stub, seed, question, max_tokens=length, **limit) for seed in (1, 2, 3)}
        assert texts == {expected}, limit


async def test_same_seed_same_text_with_every_sampler_on(stub) -> None:  # type: ignore[no-untyped-def]
    knobs = {"top_k": 40, "top_p": 0.95, "min_p": 0.02, "repetition_penalty": 1.1}
    first = await sampled(stub, 99, **knobs)
    assert first == await sampled(stub, 99, **knobs)
    assert any([await sampled(stub, seed, **knobs) != first for seed in (1, 2, 3)])


async def test_repetition_penalty_changes_a_repetitive_answer(stub) -> None:  # type: ignore[no-untyped-def]
    question = "Repeat the word 'apple' twenty times."
    assert await greedy(stub, question) != await greedy(stub, question, repetition_penalty=1.8)


async def test_logit_bias_forces_and_bans_tokens(stub) -> None:  # type: ignore[no-untyped-def]
    banana = (await stub.Tokenize(pb.TokenizeRequest(text=" banana"))).ids[0]
    _, messages = await collect(
        stub, chat_request(QUESTION, max_tokens=6, temperature=0, logit_bias={banana: 100.0})
    )
    assert [i for m in messages for c in m.choices for i in c.token_ids] == [banana] * 6

    # -100 bans a token: the greedy answer's first token never appears once it is banned.
    def ids(messages: list[pb.GenerateResponse]) -> list[int]:
        return [i for m in messages for c in m.choices for i in c.token_ids]

    question = "What is the capital of France?"
    _, plain = await collect(stub, chat_request(question, max_tokens=12, temperature=0))
    first = ids(plain)[0]
    _, banned = await collect(
        stub, chat_request(question, max_tokens=12, temperature=0, logit_bias={first: -100.0})
    )
    assert ids(banned) and first not in ids(banned)


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        ({"logit_bias": {10**7: 1.0}}, "logit_bias"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias"),
        ({"logit_bias": {5: 101.0}}, "logit_bias"),
        ({"top_k": -2}, "top_k"),
        ({"repetition_penalty": -1.0}, "repetition_penalty"),
    ],
)
async def test_invalid_sampler_values_name_the_field(stub, sampling: dict[str, object], field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(chat_request("hi", max_tokens=2, **sampling)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("ragway-field", field) in tuple(info.value.trailing_metadata())
