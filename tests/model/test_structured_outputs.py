"""Structured outputs through the real engine: JSON Schema, JSON object, regex, choice, grammar;
constraints the backend cannot compile are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import json
import re

import grpc
import jsonschema
import pytest

from ragway.v1 import model_pb2 as pb
from tests.model.helpers import chat_request, collect
from tests.model.schemas import SCHEMAS


def schema_request(prompt: str, schema: dict[str, object]) -> pb.GenerateRequest:
    return chat_request(
        f"{prompt} Answer in JSON.", max_tokens=300, temperature=0, json_schema=json.dumps(schema)
    )


async def test_twenty_varied_schemas_all_validate(stub) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(*(collect(stub, schema_request(p, s)) for _, p, s in SCHEMAS))
    failures = []
    for (name, _, schema), (texts, messages) in zip(SCHEMAS, results, strict=True):
        try:
            jsonschema.validate(json.loads(texts[0]), schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            failures.append(f"{name}: {exc} in {texts[0]!r}")
        assert messages[-1].choices[0].finish_reason == pb.FINISH_REASON_STOP, name
    assert not failures, f"{len(SCHEMAS) - len(failures)}/{len(SCHEMAS)} validated: {failures}"


async def test_json_object_is_a_json_object(stub) -> None:  # type: ignore[no-untyped-def]
    texts, _ = await collect(
        stub, chat_request("Describe a dog as JSON.", max_tokens=200, temperature=0, json_object=True)
    )
    assert isinstance(json.loads(texts[0]), dict)


async def test_regex_choice_and_grammar_constrain_the_text(stub) -> None:  # type: ignore[no-untyped-def]
    regex, _ = await collect(
        stub,
        chat_request(
            "What is the date?", max_tokens=20, temperature=0, regex=r"20[0-9]{2}-[01][0-9]-[0-3][0-9]"
        ),
    )
    assert re.fullmatch(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]", regex[0])
    choice, _ = await collect(
        stub,
        chat_request(
            "Is the sky blue?", max_tokens=10, temperature=0, choice=pb.Choices(values=["yes", "no", "maybe"])
        ),
    )
    assert choice[0] in {"yes", "no", "maybe"}
    grammar = 'root ::= "The answer is " ("one" | "two" | "three") "."'
    text, _ = await collect(
        stub, chat_request("Pick a number.", max_tokens=20, temperature=0, grammar=grammar)
    )
    assert re.fullmatch(r"The answer is (one|two|three)\.", text[0])


async def test_constraint_holds_when_sampling(stub) -> None:  # type: ignore[no-untyped-def]
    _, prompt, schema = SCHEMAS[0]
    request = chat_request(
        prompt, max_tokens=200, temperature=1.0, seed=7, n=3, json_schema=json.dumps(schema)
    )
    texts, _ = await collect(stub, request)
    for text in texts.values():
        jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        # A $ref to nothing: no backend can compile it.
        (
            {"json_schema": json.dumps({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}})},
            "json_schema",
        ),
        ({"json_schema": "{not json"}, "json_schema"),
        ({"json_schema": "[1, 2]"}, "json_schema"),
        ({"regex": "(unclosed"}, "regex"),
        ({"grammar": 'root ::= "a" undefined_rule'}, "grammar"),
        ({"choice": pb.Choices()}, "choice"),
        ({"json_object": False}, "json_object"),
    ],
)
async def test_uncompilable_constraint_names_the_field(stub, sampling: dict[str, object], field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(chat_request("hi", max_tokens=5, **sampling)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()
    assert ("ragway-field", field) in tuple(info.value.trailing_metadata())
