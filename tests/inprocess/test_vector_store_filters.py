"""The one filter language of every search (rag.filters): OpenAI's comparison and compound
filters, validated and translated whole into the retrieval service's Filter, which the store
evaluates; the collections API's JSON form translated into the same language (pure logic, no
services; the stores' own evaluation is proven in tests/retrieval/test_contract.py)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ragway.core.errors import InvalidArgument
from ragway.gateway.clients.retrieval import Condition, Filter
from ragway.gateway.rag import filters
from ragway.gateway.vector_stores.protocol import ChunkingStrategy
from ragway.gateway.vector_stores.serving import chunking_of
from tests.utils.fakes import keeps


def eq(key: str, value: Any) -> dict[str, Any]:
    return {"type": "eq", "key": key, "value": value}


def test_every_comparison_and_compound_goes_to_the_store() -> None:
    where = filters.parse(
        {
            "type": "and",
            "filters": [
                eq("topic", "a"),
                {"type": "in", "key": "tag", "value": ["x", "y"]},
                {"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2020}]},
                {"type": "ne", "key": "lang", "value": "de"},
                {"type": "nin", "key": "tag", "value": ["z"]},
                {"type": "or", "filters": [eq("x", 1), {"type": "lt", "key": "year", "value": 2025}]},
            ],
        }
    )
    assert where == Filter(
        must=(
            Condition("topic", equals="a"),
            Condition("tag", any_of=["x", "y"]),
            Condition("year", range={"gte": 2020.0}),
            Filter(should=(Condition("x", equals=1), Condition("year", range={"lt": 2025.0}))),
        ),
        must_not=(Condition("lang", equals="de"), Condition("tag", any_of=["z"])),
    )
    assert filters.parse(eq("a", 1)) == Filter(must=(Condition("a", equals=1),))
    assert filters.parse({"type": "or", "filters": [eq("a", 1), eq("b", 2)]}) == Filter(
        should=(Condition("a", equals=1), Condition("b", equals=2))
    )
    assert filters.parse(None) is None


def test_in_over_mixed_types_is_an_or_of_equalities() -> None:
    # The store matches one any_of set of strings or of whole numbers; anything else is spelled out.
    assert filters.parse({"type": "in", "key": "a", "value": [1, 2.0]}) == Filter(
        must=(Condition("a", any_of=[1, 2.0]),)
    )
    mixed = filters.parse({"type": "nin", "key": "a", "value": ["x", 2, True, 1.5]})
    assert mixed == Filter(
        must_not=(
            Filter(
                should=tuple(Condition("a", equals=v) for v in ["x", 2, True, 1.5]),
            ),
        )
    )


def _means(spec: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """What a filter means, written out from OpenAI's definition: a missing key fails eq, in and
    the ranges and passes ne and nin; booleans are not numbers."""

    def same(have: Any, want: Any) -> bool:
        if isinstance(have, bool) or isinstance(want, bool):
            return isinstance(have, bool) and isinstance(want, bool) and have == want
        if isinstance(have, int | float) and isinstance(want, int | float):
            return float(have) == float(want)
        return isinstance(have, str) and isinstance(want, str) and have == want

    kind = spec["type"]
    if kind == "and":
        return all(_means(f, metadata) for f in spec["filters"])
    if kind == "or":
        return any(_means(f, metadata) for f in spec["filters"])
    key, want = spec["key"], spec["value"]
    present, have = key in metadata, metadata.get(key)
    if kind in ("eq", "ne"):
        hit = present and same(have, want)
        return hit if kind == "eq" else not hit
    if kind in ("in", "nin"):
        hit = present and any(same(have, w) for w in want)
        return hit if kind == "in" else not hit
    if not present or isinstance(have, bool) or not isinstance(have, int | float):
        return False
    return {"gt": have > want, "gte": have >= want, "lt": have < want, "lte": have <= want}[kind]


def test_the_store_filter_means_exactly_the_request_filter() -> None:
    leaves = [
        eq("t", "a"),
        {"type": "ne", "key": "t", "value": "b"},
        {"type": "in", "key": "y", "value": [1, 2]},
        {"type": "nin", "key": "y", "value": [2]},
        {"type": "gt", "key": "y", "value": 1},
        {"type": "in", "key": "t", "value": ["a", 3, True]},
        eq("f", True),
    ]
    specs: list[dict[str, Any]] = list(leaves)
    for left, right in itertools.product(leaves, repeat=2):
        specs.append({"type": "and", "filters": [left, right]})
        specs.append({"type": "or", "filters": [left, right]})
        specs.append({"type": "and", "filters": [left, {"type": "or", "filters": [right, left]}]})
        specs.append({"type": "or", "filters": [{"type": "and", "filters": [left, right]}, right]})
    rows = [{"t": t, "y": y, "f": f} for t in ("a", "b", 3) for y in (1, 2, 3) for f in (True, 1)]
    rows += [{"t": "a"}, {"y": 2}, {"t": True}, {}]
    for spec in specs:
        where = filters.parse(spec)
        assert where is not None
        for metadata in rows:
            assert keeps(where, metadata) == _means(spec, metadata), (spec, metadata)


def test_the_collections_json_filter_is_translated_into_the_one_language() -> None:
    spec = {"lang": "en", "tag": {"in": ["a", "b"]}, "year": {"gte": 2020, "lt": 2025}}
    assert filters.from_collection_filter(spec) == {
        "type": "and",
        "filters": [
            eq("lang", "en"),
            {"type": "in", "key": "tag", "value": ["a", "b"]},
            {"type": "gte", "key": "year", "value": 2020},
            {"type": "lt", "key": "year", "value": 2025},
        ],
    }
    assert filters.from_collection_filter({"lang": "en"}) == eq("lang", "en")
    assert filters.from_collection_filter({}) is None and filters.from_collection_filter(None) is None
    for bad in ({"a b": 1}, {"a": {"in": []}}, {"a": {"gte": "2020"}}, {"a": [1]}, {"a": {"ne": 1}}):
        with pytest.raises(InvalidArgument) as err:
            filters.from_collection_filter(bad)
        assert err.value.field == "filter"


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
        filters.parse(spec if isinstance(spec, dict) else "not an object")
    assert err.value.field == "filters"


def test_deep_or_huge_filters_are_refused() -> None:
    deep: dict[str, Any] = eq("a", 1)
    for _ in range(filters.MAX_DEPTH + 1):
        deep = {"type": "and", "filters": [deep]}
    with pytest.raises(InvalidArgument):
        filters.parse(deep)
    with pytest.raises(InvalidArgument):
        filters.parse({"type": "or", "filters": [eq("a", n) for n in range(filters.MAX_CONDITIONS + 1)]})


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
