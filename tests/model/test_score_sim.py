"""The simulated engine's Score: a deterministic stand-in (token overlap, not a model's judgement)
so routing tests and benchmarks that call Score see real-shaped answers; it refuses what the real
engine refuses, through the same prompt builder (ragway.model.scoring)."""

from __future__ import annotations

import pytest

from ragway.core.errors import InvalidArgument
from ragway.model.config import ModelSettings
from ragway.model.sim import SimEngine


async def test_sim_scores_favour_the_query_words_and_refuse_bad_input() -> None:
    engine = SimEngine(ModelSettings(engine="sim", score_max_passages=3))
    await engine.start()
    try:
        passages = ["Sourdough bread needs a starter.", "Ocean tides are caused by the Moon."]
        result = await engine.score("what causes ocean tides", passages, 0, "t")
        assert [s.index for s in result.scores] == [0, 1]
        assert result.scores[1].score > result.scores[0].score
        assert result.prompt_tokens == sum(s.prompt_tokens for s in result.scores) and result.query_tokens > 0
        again = await engine.score("what causes ocean tides", passages, 0, "t2")
        assert again.scores == result.scores  # deterministic
        assert again.cached_tokens > 0  # the timing model's prefix cache held the prompts
        for query, texts, field in (
            ("q", [], "passages"),
            ("q", ["p"] * 4, "passages"),
            (" ", ["p"], "query"),
        ):
            with pytest.raises(InvalidArgument) as info:
                await engine.score(query, texts, 0, "bad")
            assert info.value.field == field
    finally:
        engine.shutdown()
