"""Structured outputs: ragway.v1.SamplingParams' `constraint` as vLLM's StructuredOutputsParams.

The engine compiles the constraint with its configured backend (RAGWAY_MODEL_STRUCTURED_OUTPUTS_BACKEND,
xgrammar by default: the fastest here, and the one tool calls' structural tags need). What can be
checked without the engine is checked here, so the error names the field; `Engine.verify` runs
vLLM's own backend validation before the request is admitted, so a schema the backend cannot
compile is INVALID_ARGUMENT too, never a failure mid-stream.
"""

from __future__ import annotations

import json
from typing import Any

from vllm.sampling_params import StructuredOutputsParams

from ragway.core.errors import InvalidArgument
from ragway.v1 import model_pb2

CONSTRAINT = "constraint"  # the oneof's name in ragway.v1.SamplingParams


def constraint_field(params: model_pb2.SamplingParams) -> str | None:
    """Which constraint the request sets ("json_schema", "regex", ...), if any."""
    return params.WhichOneof(CONSTRAINT)


def structured_outputs(params: model_pb2.SamplingParams) -> StructuredOutputsParams | None:
    """The request's constraint for vLLM, or None for free text."""
    kind = constraint_field(params)
    if kind is None:
        return None
    if kind == "json_schema":
        return StructuredOutputsParams(json=_schema(params.json_schema))
    if kind == "json_object":
        if not params.json_object:
            raise InvalidArgument("json_object must be true when set", field="json_object")
        return StructuredOutputsParams(json_object=True)
    if kind == "regex":
        if not params.regex:
            raise InvalidArgument("regex must not be empty", field="regex")
        return StructuredOutputsParams(regex=params.regex)
    if kind == "choice":
        values = list(params.choice.values)
        if not values or any(not v for v in values):
            raise InvalidArgument("choice needs at least one value, none empty", field="choice")
        return StructuredOutputsParams(choice=values)
    if not params.grammar.strip():
        raise InvalidArgument("grammar must not be empty", field="grammar")
    return StructuredOutputsParams(grammar=params.grammar)


def _schema(text: str) -> dict[str, Any]:
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"json_schema is not valid JSON: {exc}", field="json_schema") from exc
    if not isinstance(schema, dict):
        raise InvalidArgument("json_schema must be a JSON Schema object", field="json_schema")
    return schema
