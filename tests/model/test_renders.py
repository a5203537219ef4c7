"""The model service's memory of recent renders (ragway/model/renders.py): pure logic, no engine.
That a remembered render equals a fresh one on the real tokenizer is checked by the engine tests
that compare Tokenize with transformers' apply_chat_template."""

from __future__ import annotations

from ragway.model.renders import ChatRenders, MessageSizes
from ragway.v1 import model_pb2 as pb


def chat(*contents: str) -> pb.ChatInput:
    return pb.ChatInput(messages=[pb.ChatMessage(role="user", content=c) for c in contents])


def test_the_same_chat_renders_once_and_any_change_renders_again() -> None:
    renders = ChatRenders(size=2)
    calls: list[str] = []

    def render(label: str, ids: list[int]):  # type: ignore[no-untyped-def]
        return lambda: calls.append(label) or ids

    assert renders.ids(chat("hello"), render("a", [1, 2, 3])) == [1, 2, 3]
    assert renders.ids(chat("hello"), render("a again", [9])) == [1, 2, 3]
    assert renders.ids(chat("hello!"), render("b", [4])) == [4]
    tools = pb.ChatInput(messages=chat("hello").messages, parallel_tool_calls=False)
    assert renders.ids(tools, render("c", [5])) == [5]
    # Two entries: the oldest ("hello") is gone, so it renders afresh.
    assert renders.ids(chat("hello"), render("a later", [1, 2, 3])) == [1, 2, 3]
    assert calls == ["a", "b", "c", "a later"]


def test_message_sizes_count_only_contents_not_seen_lately() -> None:
    sizes = MessageSizes()
    asked: list[list[str]] = []

    def count(contents: list[str]) -> list[int]:
        asked.append(contents)
        return [len(c.split()) for c in contents]

    assert sizes.counts(["one two", "three"], count) == [2, 1]
    assert sizes.counts(["one two", "three", "four five six", "three"], count) == [2, 1, 3, 1]
    assert asked == [["one two", "three"], ["four five six"]]
