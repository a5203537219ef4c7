"""OpenAI's vector store search filters, split between the store and the gateway.

A filter is a comparison `{"type": "eq"|"ne"|"gt"|"gte"|"lt"|"lte"|"in"|"nin", "key", "value"}`
or a compound `{"type": "and"|"or", "filters": [...]}`, nested at will, on file attributes.

The retrieval service's `Filter` is an AND of conditions (equals / any_of / range), so `plan()`
sends it what it can express — eq, in, gt/gte/lt/lte, alone or as the direct children of the top
`and` — and keeps the rest (`ne`, `nin`, `or`, and any nesting under them) as a *residual* that
`matches()` evaluates on each hit's metadata in the gateway. A search with a residual asks the
store for OVERFETCH times the results wanted (at most the store's 100), then keeps the hits that
pass, so a residual that rejects most candidates can return fewer than `max_num_results`.

With `should` (OR) and `must_not` (NOT) lists and a nested `Filter` inside a condition in
retrieval.proto, all of this would run in the store and the residual would go away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragway.core.errors import InvalidArgument
from ragway.core.limits import MAX_TOP_K, METADATA_KEY
from ragway.gateway.clients.retrieval import Condition

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
RANGES = ("gt", "gte", "lt", "lte")
OVERFETCH = 4
MAX_DEPTH = 8
MAX_CONDITIONS = 64

Scalar = str | int | float | bool


@dataclass(frozen=True)
class FilterPlan:
    """What the store filters (`conditions`, all must hold) and what the gateway still checks."""

    conditions: list[Condition]
    residual: dict[str, Any] | None

    def candidates(self, wanted: int) -> int:
        """How many hits to ask the store for to return `wanted` after the residual."""
        return wanted if self.residual is None else min(MAX_TOP_K, wanted * OVERFETCH)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(spec: Any, depth: int = 0, counter: list[int] | None = None) -> dict[str, Any]:
    """The filter, checked; a malformed one is a 400 naming `filters` and what is wrong."""
    counter = counter if counter is not None else [0]
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise InvalidArgument(f"filters: at most {MAX_CONDITIONS} filters in all", field="filters")
    if depth > MAX_DEPTH:
        raise InvalidArgument(f"filters: nested deeper than {MAX_DEPTH}", field="filters")
    if not isinstance(spec, dict):
        raise InvalidArgument("filters: each filter is an object with a 'type'", field="filters")
    kind = spec.get("type")
    if kind in COMPOUNDS:
        children = spec.get("filters")
        if set(spec) - {"type", "filters"} or not isinstance(children, list) or not children:
            raise InvalidArgument(f"filters: {kind!r} takes a non-empty list 'filters'", field="filters")
        return {"type": kind, "filters": [validate(c, depth + 1, counter) for c in children]}
    if kind not in COMPARISONS:
        raise InvalidArgument(
            f"filters: type must be one of {', '.join(COMPARISONS + COMPOUNDS)}, got {kind!r}",
            field="filters",
        )
    key, value = spec.get("key"), spec.get("value")
    if set(spec) != {"type", "key", "value"}:
        raise InvalidArgument(f"filters: {kind!r} takes exactly 'key' and 'value'", field="filters")
    if not isinstance(key, str) or not METADATA_KEY.match(key):
        raise InvalidArgument(
            f"filters: key {key!r} must be an identifier (letters, digits, '_'; up to 64)", field="filters"
        )
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(isinstance(v, Scalar) for v in value):
            raise InvalidArgument(
                f"filters: {kind!r} on {key!r} takes a non-empty list of values", field="filters"
            )
    elif kind in RANGES:
        if not _number(value):
            raise InvalidArgument(f"filters: {kind!r} on {key!r} takes a number", field="filters")
    elif not isinstance(value, Scalar):
        raise InvalidArgument(
            f"filters: {kind!r} on {key!r} takes a string, number or boolean", field="filters"
        )
    return {"type": kind, "key": key, "value": value}


def _condition(spec: dict[str, Any]) -> Condition | None:
    """The store condition for a comparison the store can run, else None."""
    kind, key, value = spec["type"], str(spec.get("key", "")), spec["value"]
    if kind == "eq":
        return Condition(key, equals=value)
    if kind == "in":
        return Condition(key, any_of=list(value))
    if kind in RANGES:
        return Condition(key, range={kind: float(value)})
    return None


def plan(spec: Any) -> FilterPlan:
    """Validate a filter and split it into store conditions and a gateway residual."""
    if spec is None:
        return FilterPlan([], None)
    checked = validate(spec)
    parts = checked["filters"] if checked["type"] == "and" else [checked]
    # Nested ands flatten into the top one.
    flat: list[dict[str, Any]] = []
    while parts:
        part = parts.pop(0)
        if part["type"] == "and":
            parts = part["filters"] + parts
        else:
            flat.append(part)
    conditions, rest = [], []
    for part in flat:
        cond = _condition(part) if part["type"] in COMPARISONS else None
        (conditions.append(cond) if cond is not None else rest.append(part))
    residual = None if not rest else rest[0] if len(rest) == 1 else {"type": "and", "filters": rest}
    return FilterPlan(conditions, residual)


def _equal(have: Any, want: Any) -> bool:
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    if _number(have) and _number(want):
        return float(have) == float(want)
    return isinstance(have, str) and isinstance(want, str) and have == want


def matches(spec: dict[str, Any] | None, metadata: dict[str, Any]) -> bool:
    """Whether a hit's metadata passes a validated filter. A missing key fails eq, in and the
    ranges (there is nothing to compare) and passes ne and nin (it is not equal to anything)."""
    if spec is None:
        return True
    kind = spec["type"]
    if kind == "and":
        return all(matches(f, metadata) for f in spec["filters"])
    if kind == "or":
        return any(matches(f, metadata) for f in spec["filters"])
    key, want = str(spec["key"]), spec["value"]
    present = key in metadata
    have = metadata.get(key)
    if kind == "eq":
        return present and _equal(have, want)
    if kind == "ne":
        return not (present and _equal(have, want))
    if kind == "in":
        return present and any(_equal(have, w) for w in want)
    if kind == "nin":
        return not (present and any(_equal(have, w) for w in want))
    if not present or not _number(have):
        return False
    value, bound = float(metadata[key]), float(want)
    return {"gt": value > bound, "gte": value >= bound, "lt": value < bound, "lte": value <= bound}[kind]
