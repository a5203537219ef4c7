"""Validation against the Open Responses schemas vendored in tests/gateway/schemas/ (see its README),
with OpenAI's file_search tool, call item, file_citation annotation and events added to its unions."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parents[1] / "gateway" / "schemas"
DOCUMENT = SCHEMAS / "openresponses.json"
FILE_SEARCH = SCHEMAS / "file_search.json"
# Which union of the Open Responses document each file_search schema joins.
UNIONS = {"Tool": "FileSearchTool", "ItemField": "FileSearchCall", "Annotation": "FileCitationBody"}


@cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text())
    schemas = document["components"]["schemas"]
    added = json.loads(FILE_SEARCH.read_text())["components"]["schemas"]
    schemas.update(added)
    for union, member in UNIONS.items():
        schemas[union]["oneOf"].append({"$ref": f"#/components/schemas/{member}"})
    stream = document["paths"]["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    stream["schema"]["oneOf"].extend(
        {"$ref": f"#/components/schemas/{name}"} for name in added if name.endswith("StreamingEvent")
    )
    return document


@cache
def _validator(schema_name: str) -> jsonschema.Draft202012Validator:
    document = _document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


@cache
def _event_schemas() -> dict[str, str]:
    """Event type -> the name of its schema, from the stream's oneOf."""
    stream = _document()["paths"]["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    names = [entry["$ref"].rsplit("/", 1)[-1] for entry in stream["schema"]["oneOf"]]
    schemas = _document()["components"]["schemas"]
    return {schemas[n]["properties"]["type"]["enum"][0]: n for n in names}


def check_response(body: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `body` is a valid response object."""
    _validator("ResponseResource").validate(body)


def check_item(item: dict[str, Any]) -> None:
    _validator("ItemField").validate(item)


def check_tool(tool: dict[str, Any]) -> None:
    _validator("Tool").validate(tool)


def check_event(event: dict[str, Any]) -> None:
    """Raise unless `event` is one of the specification's streaming events and valid as such."""
    kind = event.get("type")
    assert kind in _event_schemas(), f"{kind!r} is not an Open Responses streaming event"
    _validator(_event_schemas()[kind]).validate(event)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The events of a Responses stream; each `event:` line must name its data's type."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        event = json.loads(fields["data"])
        assert fields.get("event") == event["type"], block
        events.append(event)
    return events
