"""Small builders for model-service requests."""

from __future__ import annotations

from ragway.v1 import model_pb2 as pb


def chat_request(question: str, **sampling: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        chat=pb.ChatInput(messages=[pb.ChatMessage(role="user", content=question)]),
        sampling=pb.SamplingParams(**sampling),  # type: ignore[arg-type]
    )


async def collect(stub, request: pb.GenerateRequest) -> tuple[dict[int, str], list[pb.GenerateResponse]]:  # type: ignore[no-untyped-def]
    texts: dict[int, str] = {}
    messages = []
    async for message in stub.Generate(request):
        messages.append(message)
        for choice in message.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    return texts, messages


def tool_calls(messages: list[pb.GenerateResponse], index: int = 0) -> list[dict[str, str]]:
    """One choice's streamed tool calls put back together, checking OpenAI's streaming shape on
    the way: a call's first delta carries its id and name, later ones only argument fragments."""
    calls: dict[int, dict[str, str]] = {}
    for message in messages:
        for choice in message.choices:
            if choice.index != index:
                continue
            for delta in choice.tool_calls:
                if delta.index not in calls:
                    assert delta.id and delta.name, f"the first delta of call {delta.index} lacks id or name"
                    assert delta.index == len(calls), "calls are numbered 0, 1, ... in order"
                    calls[delta.index] = {"id": delta.id, "name": delta.name, "arguments": ""}
                else:
                    assert not delta.id and not delta.name, "only a call's first delta names it"
                calls[delta.index]["arguments"] += delta.arguments
    return [calls[i] for i in sorted(calls)]
