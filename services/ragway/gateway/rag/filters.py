"""The one metadata filter language of every search: OpenAI's vector store filters.

A filter is a comparison `{"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key", "value"}`
or a compound `{"type": "and"|"or", "filters": [...]}`, nested at will (up to 8 levels, 64 filters
in all), on chunk metadata (a vector store file's attributes). `parse` validates one — a
malformed filter is a 400 naming the request's filter field — and turns it into the retrieval
service's `Filter` (retrieval.proto), whose must / should / must_not clauses nest the same way, so
the store evaluates all of it: `or`, `ne` and `nin` included, inside the index, with no
over-fetching and no match lost however unlike the query it is.

A condition on a key a chunk lacks fails eq, in and the ranges (there is nothing to compare) and
passes ne and nin (it is not equal to anything). Booleans are not numbers: eq true never matches 1.

`/v1/collections/*/search` and the chat `rag` option take a shorter JSON form, an AND of
conditions keyed by metadata key, which `from_collection_filter` translates into this language:

    {"lang": "en"}                  ->  {"type": "eq", "key": "lang", "value": "en"}
    {"tag": {"in": ["a", "b"]}}     ->  {"type": "in", "key": "tag", "value": ["a", "b"]}
    {"year": {"gte": 2020, "lt": 2025}}
                                    ->  {"type": "gte", ...}, {"type": "lt", ...}
    several keys                    ->  {"type": "and", "filters": [one per key, in order]}
"""

from __future__ import annotations

from typing import Any

from ragway.core.errors import InvalidArgument
from ragway.core.limits import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, METADATA_KEY
from ragway.gateway.clients.retrieval import Condition, Filter

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
RANGES = ("gt", "gte", "lt", "lte")
MAX_DEPTH = MAX_FILTER_DEPTH
MAX_CONDITIONS = MAX_FILTER_CONDITIONS

Scalar = str | int | float | bool
Clause = Condition | Filter


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(
    spec: Any, depth: int = 0, counter: list[int] | None = None, *, field: str = "filters"
) -> dict[str, Any]:
    """The filter, checked; a malformed one is a 400 naming `field` and what is wrong."""
    counter = counter if counter is not None else [0]
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise InvalidArgument(f"{field}: at most {MAX_CONDITIONS} filters in all", field=field)
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"{field}: nested deeper than {MAX_DEPTH}", field=field)
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{field}: each filter is an object with a 'type'", field=field)
    kind = spec.get("type")
    if kind in COMPOUNDS:
        children = spec.get("filters")
        if set(spec) - {"type", "filters"} or not isinstance(children, list) or not children:
            raise InvalidArgument(f"{field}: {kind!r} takes a non-empty list 'filters'", field=field)
        return {"type": kind, "filters": [validate(c, depth + 1, counter, field=field) for c in children]}
    if kind not in COMPARISONS:
        raise InvalidArgument(
            f"{field}: type must be one of {', '.join(COMPARISONS + COMPOUNDS)}, got {kind!r}", field=field
        )
    key, value = spec.get("key"), spec.get("value")
    if set(spec) != {"type", "key", "value"}:
        raise InvalidArgument(f"{field}: {kind!r} takes exactly 'key' and 'value'", field=field)
    if not isinstance(key, str) or not METADATA_KEY.match(key):
        raise InvalidArgument(
            f"{field}: key {key!r} must be an identifier (letters, digits, '_'; up to 64)", field=field
        )
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(isinstance(v, Scalar) for v in value):
            raise InvalidArgument(
                f"{field}: {kind!r} on {key!r} takes a non-empty list of values", field=field
            )
    elif kind in RANGES:
        if not _number(value):
            raise InvalidArgument(f"{field}: {kind!r} on {key!r} takes a number", field=field)
    elif not isinstance(value, Scalar):
        raise InvalidArgument(f"{field}: {kind!r} on {key!r} takes a string, number or boolean", field=field)
    return {"type": kind, "key": key, "value": value}


def _one_set(values: list[Any]) -> bool:
    """Whether the store can match `values` as one any_of: all strings, or all whole numbers (the
    retrieval service reads JSON's 2.0 as 2)."""
    return all(isinstance(v, str) for v in values) or all(
        _number(v) and float(v).is_integer() for v in values
    )


def _any_of(key: str, values: list[Any]) -> Clause:
    if _one_set(values):
        return Condition(key, any_of=list(values))
    # Booleans, fractions or mixed types: one equality per value, any of which may hold.
    return Filter(should=tuple(Condition(key, equals=v) for v in values))


def _clause(spec: dict[str, Any]) -> Clause:
    kind = spec["type"]
    if kind == "and":
        must: list[Clause] = []
        must_not: list[Clause] = []
        for child in (_clause(c) for c in spec["filters"]):
            # An AND of ANDs (and of NOTs) is one filter: fewer levels for the store to walk.
            if isinstance(child, Filter) and not child.should:
                must += child.must
                must_not += child.must_not
            else:
                must.append(child)
        return Filter(must=tuple(must), must_not=tuple(must_not))
    if kind == "or":
        return Filter(should=tuple(_clause(c) for c in spec["filters"]))
    key, value = spec["key"], spec["value"]
    if kind == "eq":
        return Condition(key, equals=value)
    if kind == "ne":
        return Filter(must_not=(Condition(key, equals=value),))
    if kind == "in":
        return _any_of(key, value)
    if kind == "nin":
        return Filter(must_not=(_any_of(key, value),))
    return Condition(key, range={kind: float(value)})


def parse(spec: Any, field: str = "filters") -> Filter | None:
    """A request's filter (None: no filter), validated, as the retrieval service's Filter."""
    if spec is None:
        return None
    clause = _clause(validate(spec, field=field))
    return clause if isinstance(clause, Filter) else Filter(must=(clause,))


def from_collection_filter(spec: dict[str, Any] | None, field: str = "filter") -> dict[str, Any] | None:
    """The collections API's `{key: value | {"in": [...]} | {"gte": n, ...}}` (an AND of
    conditions) in the one filter language; None for no filter. A malformed one is a 400 naming
    `field`."""
    parts: list[dict[str, Any]] = []
    for key, cond in (spec or {}).items():
        if not isinstance(key, str) or not METADATA_KEY.match(key):
            raise InvalidArgument(
                f"filter key {key!r} must be an identifier (letters, digits, '_'; up to 64)", field=field
            )
        if isinstance(cond, dict):
            if set(cond) == {"in"} and isinstance(cond["in"], list) and cond["in"]:
                if not all(isinstance(item, Scalar) for item in cond["in"]):
                    raise InvalidArgument(f"filter {key!r}: 'in' takes a list of scalars", field=field)
                parts.append({"type": "in", "key": key, "value": list(cond["in"])})
            elif cond and set(cond) <= set(RANGES) and all(_number(v) for v in cond.values()):
                parts += [{"type": op, "key": key, "value": v} for op, v in cond.items()]
            else:
                raise InvalidArgument(
                    f"filter {key!r}: use a value, {{'in': [...]}} or a range with gt/gte/lt/lte numbers",
                    field=field,
                )
        elif isinstance(cond, Scalar):
            parts.append({"type": "eq", "key": key, "value": cond})
        else:
            raise InvalidArgument(f"filter {key!r}: unsupported condition", field=field)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"type": "and", "filters": parts}
