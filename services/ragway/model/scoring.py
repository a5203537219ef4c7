"""Scoring passages against a query with the served language model: the LLM reranker's prompts.

UPR (Sachan et al. 2022, "Improving Passage Retrieval with Zero-Shot Question Generation") ranks a
passage by how likely the model finds the question after reading it: the mean log-probability of
the query's tokens in `INSTRUCTION + passage + QUESTION_CUE + query`. No extra weights: the model
already served is the reranker.

The prompt is built as token ids in three parts, so the query's positions are known exactly:

    [INSTRUCTION "Passage: "] [passage, cut to a token budget] ["\\nQuestion:"] [" " query]

The instruction comes *first*: every prompt of one call then starts with the same tokens, and the
prompts of one passage scored for several queries share everything up to the query, which is what
vLLM's prefix cache can reuse (it caches whole KV blocks only: 16 tokens on GPUs, 128 on the CPU
build, so on the CPU only a repeated passage is long enough to be reused).

This module is pure (a tokenizer in, token ids and numbers out), so both engines share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragway.core.errors import InvalidArgument

INSTRUCTION = "Please write a question based on this passage.\nPassage: "
QUESTION_CUE = "\nQuestion:"


@dataclass(frozen=True)
class ScorePrompt:
    """One passage's scoring prompt: `ids[query_start:]` are the query's tokens."""

    ids: list[int]
    query_start: int
    truncated: bool


@dataclass(frozen=True)
class PassageScore:
    """What the Score call returns for one passage."""

    index: int
    score: float  # mean log p(query token | everything before it); higher is more relevant
    prompt_tokens: int
    truncated: bool


@dataclass(frozen=True)
class ScoreResult:
    scores: list[PassageScore]
    query_tokens: int
    cached_tokens: int = 0  # prompt tokens the engine reused from its prefix cache

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.scores)


def build_prompts(
    encode: Callable[[str, bool], list[int]],
    query: str,
    passages: Sequence[str],
    *,
    passage_tokens: int,
    max_passages: int,
    max_model_len: int,
) -> tuple[list[ScorePrompt], int]:
    """The scoring prompts of `passages` (each cut to `passage_tokens` tokens) and the query's
    token count. `encode(text, add_special_tokens)` is the model's tokenizer. Bad input is
    InvalidArgument naming the field: `query`, `passages`, or `passages[i]` for a passage whose
    prompt (plus the one token the engine must generate) does not fit the context."""
    if not query.strip():
        raise InvalidArgument("query must not be empty", field="query")
    if not passages:
        raise InvalidArgument("passages must not be empty: give at least one passage", field="passages")
    if len(passages) > max_passages:
        raise InvalidArgument(
            f"passages: at most {max_passages} passages per call, got {len(passages)}", field="passages"
        )
    head = encode(INSTRUCTION, True)
    cue = encode(QUESTION_CUE, False)
    query_ids = encode(" " + query.strip(), False)
    fixed = len(head) + len(cue) + len(query_ids) + 1  # +1: the engine generates one token
    if fixed > max_model_len:
        raise InvalidArgument(
            f"query: {len(query_ids)} tokens leave no room for a passage in the model's context of "
            f"{max_model_len} tokens",
            field="query",
        )
    prompts = []
    for i, passage in enumerate(passages):
        ids = encode(passage.strip(), False)
        truncated = len(ids) > passage_tokens
        ids = ids[:passage_tokens]
        if fixed + len(ids) > max_model_len:
            raise InvalidArgument(
                f"passages[{i}]: its scoring prompt takes {fixed + len(ids)} tokens (passage {len(ids)}, "
                f"query {len(query_ids)}, template {len(head) + len(cue)}, 1 to generate) but the "
                f"model's context is {max_model_len}; lower max_passage_tokens or shorten the query",
                field=f"passages[{i}]",
            )
        context = [*head, *ids, *cue]
        prompts.append(ScorePrompt([*context, *query_ids], len(context), truncated))
    return prompts, len(query_ids)


def mean_query_logprob(prompt_logprobs: Sequence[object], prompt: ScorePrompt) -> float:
    """The mean of the query tokens' log-probabilities, from vLLM's `prompt_logprobs` (one entry per
    prompt position: None first, then {token_id: Logprob} holding at least the prompt's own token)."""
    total = 0.0
    for position in range(prompt.query_start, len(prompt.ids)):
        entry = prompt_logprobs[position]
        assert isinstance(entry, dict), f"no prompt logprob at position {position}"
        total += float(entry[prompt.ids[position]].logprob)
    return total / (len(prompt.ids) - prompt.query_start)


def overlap_score(prompt: ScorePrompt) -> float:
    """The simulated engine's stand-in (not a model's judgement): the log of the share of the
    query's tokens that also occur in the passage (smoothed), so a passage that repeats the query's
    words ranks first, deterministically, and the score has the real one's sign and scale."""
    query = prompt.ids[prompt.query_start :]
    context = set(prompt.ids[: prompt.query_start])
    found = sum(1 for token in query if token in context)
    return math.log((found + 1) / (len(query) + 2))
