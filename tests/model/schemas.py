"""Twenty varied JSON Schemas with a prompt each, for structured outputs and tool calls.

They cover what clients send: nested objects, arrays of objects, enums, bounded integers and
numbers, required and optional fields, string patterns, booleans, nullable values, const and
additionalProperties false. Strings and arrays are bounded, as a strict schema for a real API
would be, so a 135M model cannot ramble past max_tokens inside one value.
"""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "maxLength": 30}

SCHEMAS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "person",
        "Describe a person with a name and an age.",
        {
            "type": "object",
            "properties": {"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
            "required": ["name", "age"],
        },
    ),
    (
        "weather",
        "What is the weather in Paris?",
        {
            "type": "object",
            "properties": {
                "city": NAME,
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "temperature": {"type": "number", "minimum": -50, "maximum": 60},
            },
            "required": ["city", "unit", "temperature"],
            "additionalProperties": False,
        },
    ),
    (
        "shopping_list",
        "Write a shopping list of fruit.",
        {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": NAME,
                            "quantity": {"type": "integer", "minimum": 1, "maximum": 12},
                        },
                        "required": ["name", "quantity"],
                    },
                    "minItems": 1,
                    "maxItems": 4,
                }
            },
            "required": ["items"],
        },
    ),
    (
        "flight",
        "Book a flight from Paris to Tokyo.",
        {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "date": {"type": "string", "pattern": "^2026-[01][0-9]-[0-3][0-9]$"},
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
            },
            "required": ["origin", "destination", "date", "passengers"],
        },
    ),
    (
        "sentiment",
        "Classify the sentiment of: 'I love this phone'.",
        {
            "type": "object",
            "properties": {
                "label": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["label", "confidence"],
        },
    ),
    (
        "address",
        "Give the address of a museum.",
        {
            "type": "object",
            "properties": {
                "name": NAME,
                "address": {
                    "type": "object",
                    "properties": {
                        "street": NAME,
                        "city": NAME,
                        "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    },
                    "required": ["street", "city", "zip"],
                },
            },
            "required": ["name", "address"],
        },
    ),
    (
        "todo",
        "Create a to-do item for buying milk.",
        {
            "type": "object",
            "properties": {
                "title": NAME,
                "done": {"type": "boolean"},
                "priority": {"type": "integer", "enum": [1, 2, 3]},
            },
            "required": ["title", "done", "priority"],
        },
    ),
    (
        "colors",
        "List three colors.",
        {
            "type": "object",
            "properties": {
                "colors": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["red", "green", "blue", "yellow", "black", "white"]},
                    "minItems": 3,
                    "maxItems": 3,
                }
            },
            "required": ["colors"],
        },
    ),
    (
        "nullable",
        "Give a user's nickname if they have one.",
        {
            "type": "object",
            "properties": {
                "user": NAME,
                "nickname": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
            },
            "required": ["user", "nickname"],
        },
    ),
    (
        "const_version",
        "Describe an API response.",
        {
            "type": "object",
            "properties": {
                "version": {"const": "v1"},
                "status": {"type": "integer", "enum": [200, 404, 500]},
                "message": NAME,
            },
            "required": ["version", "status", "message"],
        },
    ),
    (
        "matrix",
        "Give a 2x2 matrix of small numbers.",
        {
            "type": "object",
            "properties": {
                "rows": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": -9, "maximum": 9},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                    "minItems": 2,
                    "maxItems": 2,
                }
            },
            "required": ["rows"],
        },
    ),
    (
        "email",
        "Give a contact with an email address.",
        {
            "type": "object",
            "properties": {
                "name": NAME,
                "email": {"type": "string", "pattern": "^[a-z]{1,10}@[a-z]{1,10}\\.(com|org|net)$"},
            },
            "required": ["name", "email"],
        },
    ),
    (
        "recipe",
        "Give a simple pancake recipe.",
        {
            "type": "object",
            "properties": {
                "title": NAME,
                "servings": {"type": "integer", "minimum": 1, "maximum": 8},
                "ingredients": {"type": "array", "items": NAME, "minItems": 2, "maxItems": 5},
                "vegetarian": {"type": "boolean"},
            },
            "required": ["title", "servings", "ingredients", "vegetarian"],
        },
    ),
    (
        "geo",
        "Give the coordinates of London.",
        {
            "type": "object",
            "properties": {
                "lat": {"type": "number", "minimum": -90, "maximum": 90},
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
            },
            "required": ["lat", "lon"],
            "additionalProperties": False,
        },
    ),
    (
        "order",
        "Create an order for two books.",
        {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "pattern": "^ORD-[0-9]{6}$"},
                "customer": {
                    "type": "object",
                    "properties": {"name": NAME, "vip": {"type": "boolean"}},
                    "required": ["name", "vip"],
                },
                "lines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "sku": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{3}$"},
                            "qty": {"type": "integer", "minimum": 1, "maximum": 5},
                        },
                        "required": ["sku", "qty"],
                    },
                    "minItems": 1,
                    "maxItems": 3,
                },
            },
            "required": ["order_id", "customer", "lines"],
        },
    ),
    (
        "event",
        "Schedule a meeting.",
        {
            "type": "object",
            "properties": {
                "title": NAME,
                "start": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                "duration_minutes": {"type": "integer", "minimum": 15, "maximum": 240},
                "attendees": {"type": "array", "items": NAME, "maxItems": 3},
            },
            "required": ["title", "start", "duration_minutes", "attendees"],
        },
    ),
    (
        "optional_fields",
        "Describe a car.",
        {
            "type": "object",
            "properties": {
                "make": NAME,
                "model": NAME,
                "year": {"type": "integer", "minimum": 1950, "maximum": 2026},
                "electric": {"type": "boolean"},
            },
            "required": ["make", "year"],
        },
    ),
    (
        "rating",
        "Rate the movie Inception.",
        {
            "type": "object",
            "properties": {
                "movie": NAME,
                "stars": {"type": "integer", "minimum": 1, "maximum": 5},
                "tags": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["action", "drama", "sci-fi", "comedy"]},
                    "maxItems": 2,
                },
            },
            "required": ["movie", "stars", "tags"],
        },
    ),
    (
        "one_of_shape",
        "Describe a shape.",
        {
            "type": "object",
            "properties": {
                "shape": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "circle"},
                                "radius": {"type": "integer", "minimum": 1, "maximum": 100},
                            },
                            "required": ["kind", "radius"],
                        },
                        {
                            "type": "object",
                            "properties": {
                                "kind": {"const": "square"},
                                "side": {"type": "integer", "minimum": 1, "maximum": 100},
                            },
                            "required": ["kind", "side"],
                        },
                    ]
                }
            },
            "required": ["shape"],
        },
    ),
    (
        "defs_ref",
        "Give two points.",
        {
            "type": "object",
            "$defs": {
                "point": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "integer", "minimum": 0, "maximum": 10},
                        "y": {"type": "integer", "minimum": 0, "maximum": 10},
                    },
                    "required": ["x", "y"],
                }
            },
            "properties": {"a": {"$ref": "#/$defs/point"}, "b": {"$ref": "#/$defs/point"}},
            "required": ["a", "b"],
        },
    ),
]
