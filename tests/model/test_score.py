"""The Score call on the real engine: the LLM reranker ranks the passage that answers a question
above unrelated ones, scores do not depend on what the prefix cache holds, and bad input is
INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import grpc
import pytest

from ragway.v1 import model_pb2 as pb
from tests.utils.passages import PASSAGES, QUESTIONS

# How far a log-probability may move when part of the prompt comes from the prefix cache instead of
# one prefill: the cached blocks were computed in another batch shape, so the sums are rounded in
# another order. float32 keeps that below 1e-3 nats; bfloat16's 8-bit mantissa moves a score of
# about -4 by up to ~0.4 % (0.015 seen in CI), far below the gap between a relevant passage and not.
SCORE_NOISE = {"float32": 2e-3, "bfloat16": 5e-2, "float16": 2e-2}


async def test_the_answering_passage_ranks_first(stub) -> None:  # type: ignore[no-untyped-def]
    keys = list(PASSAGES)
    for question, answer in QUESTIONS:
        reply = await stub.Score(pb.ScoreRequest(query=question, passages=[PASSAGES[k] for k in keys]))
        assert [s.index for s in reply.scores] == list(range(len(keys)))
        best = max(reply.scores, key=lambda s: s.score)
        assert keys[best.index] == answer, (
            question,
            [(keys[s.index], round(s.score, 3)) for s in reply.scores],
        )
        assert all(s.score < 0 for s in reply.scores)
        assert reply.usage.prompt_tokens == sum(s.prompt_tokens for s in reply.scores) > 0
        assert reply.query_tokens > 0


async def test_scores_do_not_depend_on_the_prefix_cache(stub) -> None:  # type: ignore[no-untyped-def]
    """The second call finds the passages' blocks in the prefix cache (128-token blocks on the CPU):
    a hit that ends before the query is read, one that reaches into it is recomputed."""
    words = " ".join(f"word{i}" for i in range(400))
    passages = [words[: 150 * n] for n in range(1, 9)]  # from a few dozen tokens to past two blocks
    request = pb.ScoreRequest(
        query="Which words are listed here?", passages=passages, max_passage_tokens=1000
    )
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    first = await stub.Score(request)
    second = await stub.Score(request)
    assert second.usage.cached_prompt_tokens > 0
    tolerance = SCORE_NOISE[info.dtype]
    for a, b in zip(first.scores, second.scores, strict=True):
        assert b.score == pytest.approx(a.score, abs=tolerance)


async def test_passages_are_cut_to_the_token_budget(stub) -> None:  # type: ignore[no-untyped-def]
    long = PASSAGES["python"] * 5
    cut = await stub.Score(pb.ScoreRequest(query="venv?", passages=[long], max_passage_tokens=16))
    whole = await stub.Score(pb.ScoreRequest(query="venv?", passages=[long], max_passage_tokens=1000))
    assert cut.scores[0].truncated and not whole.scores[0].truncated
    assert cut.scores[0].prompt_tokens < whole.scores[0].prompt_tokens


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ScoreRequest(query="q"), "passages"),
        (pb.ScoreRequest(query="q", passages=["p"] * 101), "passages"),
        (pb.ScoreRequest(query=" ", passages=["p"]), "query"),
        (
            pb.ScoreRequest(query="q", passages=["short", "apple " * 5000], max_passage_tokens=8000),
            "passages[1]",
        ),
        (pb.ScoreRequest(query="apple " * 5000, passages=["p"]), "query"),
    ],
)
async def test_bad_score_requests_name_the_field(stub, request_: pb.ScoreRequest, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("ragway-field", field) in tuple(info.value.trailing_metadata())
