"""Small builders for model-service requests."""

from __future__ import annotations

import httpx

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


def metric(metrics_url: str, name: str) -> float:
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)
