"""OpenAI's vector store search filters: what goes to the store, what the gateway evaluates, and
that the two halves together mean exactly the filter (pure logic, no services)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ragway.core.errors import InvalidArgument
from ragway.gateway.clients.retrieval import Condition
from ragway.gateway.rag import filters
from ragway.gateway.rag.vector_stores import chunking_of
from ragway.gateway.vector_store_protocol import ChunkingStrategy


def eq(key: str, value: Any) -> dict[str, Any]:
    return {"type": "eq", "key": key, "value": value}


def test_store_expressible_filters_go_to_the_store_whole() -> None:
    plan = filters.plan(
        {
            "type": "and",
            "filters": [
                eq("topic", "a"),
                {"type": "in", "key": "tag", "value": ["x", "y"]},
                {"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2020}]},
                {"type": "lt", "key": "year", "value": 2025},
            ],
        }
    )
    assert plan.residual is None
    assert plan.conditions == [
        Condition("topic", equals="a"),
        Condition("tag", any_of=["x", "y"]),
        Condition("year", range={"gte": 2020.0}),
        Condition("year", range={"lt": 2025.0}),
    ]
    assert plan.candidates(10) == 10


def test_ne_nin_and_or_stay_in_the_gateway_and_overfetch() -> None:
    spec = {
        "type": "and",
        "filters": [
            eq("lang", "en"),
            {"type": "ne", "key": "topic", "value": "b"},
            {"type": "or", "filters": [eq("x", 1), {"type": "nin", "key": "y", "value": [1, 2]}]},
        ],
    }
    plan = filters.plan(spec)
    assert plan.conditions == [Condition("lang", equals="en")]
    assert plan.residual == {"type": "and", "filters": spec["filters"][1:]}
    assert plan.candidates(10) == 10 * filters.OVERFETCH
    assert plan.candidates(50) == 100  # the store's largest top_k
    top_or = filters.plan({"type": "or", "filters": [eq("a", 1), eq("b", 2)]})
    assert top_or.conditions == [] and top_or.residual is not None


@pytest.mark.parametrize(
    ("spec", "metadata", "expected"),
    [
        (eq("a", 1), {"a": 1.0}, True),  # numbers from a protobuf Struct come back as floats
        (eq("a", True), {"a": 1}, False),  # booleans are not numbers
        (eq("a", "1"), {"a": 1}, False),
        (eq("a", 1), {}, False),
        ({"type": "ne", "key": "a", "value": 1}, {}, True),  # missing: not equal to anything
        ({"type": "ne", "key": "a", "value": 1}, {"a": 1}, False),
        ({"type": "in", "key": "a", "value": ["x", 2]}, {"a": 2.0}, True),
        ({"type": "nin", "key": "a", "value": ["x", 2]}, {"a": "y"}, True),
        ({"type": "nin", "key": "a", "value": ["x"]}, {"a": "x"}, False),
        ({"type": "gt", "key": "a", "value": 2}, {"a": 3}, True),
        ({"type": "gte", "key": "a", "value": 3}, {"a": 3}, True),
        ({"type": "lt", "key": "a", "value": 3}, {"a": 3}, False),
        ({"type": "lte", "key": "a", "value": 3}, {"a": "2"}, False),  # a string is not in a range
        ({"type": "gt", "key": "a", "value": 0}, {}, False),
        ({"type": "or", "filters": [eq("a", 1), eq("b", 2)]}, {"b": 2}, True),
        ({"type": "and", "filters": [eq("a", 1), eq("b", 2)]}, {"b": 2}, False),
    ],
)
def test_matches(spec: dict[str, Any], metadata: dict[str, Any], expected: bool) -> None:
    assert filters.matches(filters.validate(spec), metadata) is expected


def _store_side(conditions: list[Condition], metadata: dict[str, Any]) -> bool:
    """What the retrieval service's AND of conditions keeps (its documented semantics)."""
    for c in conditions:
        spec: dict[str, Any]
        if c.any_of is not None:
            spec = {"type": "in", "key": c.key, "value": c.any_of}
        elif c.range is not None:
            ((op, bound),) = c.range.items()
            spec = {"type": op, "key": c.key, "value": bound}
        else:
            spec = eq(c.key, c.equals)
        if not filters.matches(spec, metadata):
            return False
    return True


def test_store_half_and_gateway_half_together_mean_the_whole_filter() -> None:
    leaves = [
        eq("t", "a"),
        {"type": "ne", "key": "t", "value": "b"},
        {"type": "in", "key": "y", "value": [1, 2]},
        {"type": "nin", "key": "y", "value": [2]},
        {"type": "gt", "key": "y", "value": 1},
    ]
    specs: list[dict[str, Any]] = list(leaves)
    for left, right in itertools.product(leaves, repeat=2):
        specs.append({"type": "and", "filters": [left, right]})
        specs.append({"type": "or", "filters": [left, right]})
        specs.append({"type": "and", "filters": [left, {"type": "or", "filters": [right, left]}]})
    rows = [{"t": t, "y": y} for t in ("a", "b", "c") for y in (1, 2, 3)] + [{"t": "a"}, {"y": 2}, {}]
    for spec in specs:
        plan = filters.plan(spec)
        for metadata in rows:
            split = _store_side(plan.conditions, metadata) and filters.matches(plan.residual, metadata)
            assert split == filters.matches(filters.validate(spec), metadata), (spec, metadata)


@pytest.mark.parametrize(
    "spec",
    [
        None.__class__,  # not an object
        {"type": "xor", "key": "a", "value": 1},
        {"type": "eq", "key": "a"},
        {"type": "eq", "key": "a", "value": [1]},
        {"type": "eq", "key": "a b", "value": 1},
        {"type": "gt", "key": "a", "value": "2020"},
        {"type": "gt", "key": "a", "value": True},
        {"type": "in", "key": "a", "value": []},
        {"type": "in", "key": "a", "value": [{"x": 1}]},
        {"type": "and", "filters": []},
        {"type": "or", "filters": [{"type": "eq"}]},
        {"type": "and", "filters": [eq("a", 1)], "extra": 1},
    ],
)
def test_malformed_filters_are_a_400_naming_filters(spec: Any) -> None:
    with pytest.raises(InvalidArgument) as err:
        filters.plan(spec if isinstance(spec, dict) else "not an object")
    assert err.value.field == "filters"


def test_deep_or_huge_filters_are_refused() -> None:
    deep: dict[str, Any] = eq("a", 1)
    for _ in range(filters.MAX_DEPTH + 1):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(InvalidArgument):
        filters.plan(deep)
    with pytest.raises(InvalidArgument):
        filters.plan({"type": "or", "filters": [eq("a", n) for n in range(filters.MAX_CONDITIONS + 1)]})


def test_chunking_strategies_report_the_sizes_applied() -> None:
    assert chunking_of(None)["static"] == {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 40}
    assert chunking_of(ChunkingStrategy(type="auto")) == chunking_of(None)
    static = ChunkingStrategy.model_validate(
        {"type": "static", "static": {"max_chunk_size_tokens": 128, "chunk_overlap_tokens": 64}}
    )
    assert chunking_of(static)["static"] == {"max_chunk_size_tokens": 128, "chunk_overlap_tokens": 64}
    # 0 overlap is sent as 1: the retrieval service reads 0 as its default (40).
    none = ChunkingStrategy.model_validate(
        {"type": "static", "static": {"max_chunk_size_tokens": 32, "chunk_overlap_tokens": 0}}
    )
    assert chunking_of(none)["static"] == {"max_chunk_size_tokens": 32, "chunk_overlap_tokens": 1}
    for size, overlap in ((8, 0), (800, 400), (100, 51), (100, -1)):
        bad = ChunkingStrategy.model_validate(
            {"type": "static", "static": {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}}
        )
        with pytest.raises(InvalidArgument):
            chunking_of(bad)
