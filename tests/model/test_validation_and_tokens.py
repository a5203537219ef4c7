"""Bad input gets INVALID_ARGUMENT naming the field; tokenization round-trips; health follows the engine."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ragway.v1 import model_pb2 as pb
from tests.conftest import MODEL_NAME, ModelService
from tests.model.helpers import chat_request


@pytest.mark.parametrize(
    ("sampling", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": 9}, "n"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": 0.0}, "top_p"),
        ({"min_p": 2.0}, "min_p"),
        ({"presence_penalty": 3.0}, "presence_penalty"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logprobs": 50}, "logprobs"),
        ({"stop": [""]}, "stop"),
    ],
)
async def test_invalid_sampling_names_the_field(stub, sampling: dict[str, object], field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(chat_request("hi", **sampling)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()
    assert ("ragway-field", field) in tuple(info.value.trailing_metadata())


async def test_prompt_longer_than_context_names_both_counts(stub) -> None:  # type: ignore[no-untyped-def]
    info_reply = await stub.GetModelInfo(pb.GetModelInfoRequest())
    text = "apple " * (info_reply.max_model_len + 100)
    count = (await stub.Tokenize(pb.TokenizeRequest(text=text, add_special_tokens=True))).count
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(pb.GenerateRequest(text=text)).read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(count) in info.value.details() and str(info_reply.max_model_len) in info.value.details()


async def test_empty_and_missing_inputs_are_invalid(stub) -> None:  # type: ignore[no-untyped-def]
    for request in (
        pb.GenerateRequest(),
        pb.GenerateRequest(text=""),
        pb.GenerateRequest(chat=pb.ChatInput()),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(request).read()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Detokenize(pb.DetokenizeRequest(ids=[10**9]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "Crème brûlée à Zürich, façade, naïve",
        "北京是中国的首都。",
        "Rockets 🚀 and cats 🐈‍⬛!",
    ],
)
async def test_tokenize_detokenize_round_trip(stub, text: str) -> None:  # type: ignore[no-untyped-def]
    tokens = await stub.Tokenize(pb.TokenizeRequest(text=text))
    assert tokens.count == len(tokens.ids) > 0
    assert tokens.max_model_len > 0
    back = await stub.Detokenize(pb.DetokenizeRequest(ids=tokens.ids))
    assert back.text == text


async def test_chat_tokenize_matches_generate_prompt(stub) -> None:  # type: ignore[no-untyped-def]
    chat = pb.ChatInput(messages=[pb.ChatMessage(role="user", content="Hello there")])
    tokens = await stub.Tokenize(pb.TokenizeRequest(chat=chat))
    first = await stub.Generate(
        pb.GenerateRequest(chat=chat, sampling=pb.SamplingParams(max_tokens=1))
    ).read()
    assert first.prompt_tokens == tokens.count


async def test_model_info_describes_the_engine(stub) -> None:  # type: ignore[no-untyped-def]
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.name == MODEL_NAME
    assert (info.engine, info.device) == ("vllm", "cpu")
    assert info.engine_version and info.max_model_len == 4096


async def test_model_info_says_which_dtype_auto_chose_and_why(stub) -> None:  # type: ignore[no-untyped-def]
    """dtype=auto on the CPU is the probe's choice: a correct dtype, the fastest correct one."""
    info = await stub.GetModelInfo(pb.GetModelInfoRequest())
    assert info.dtype_source in ("probe", "probe-cache")
    assert info.dtype_reason.startswith(f"fastest correct dtype on this CPU: {info.dtype}")
    measured = {m.dtype: m for m in info.dtype_measurements}
    assert set(measured) == {"float32", "bfloat16", "float16"}
    assert measured[info.dtype].correct and measured["float32"].correct
    fastest = max((m for m in measured.values() if m.correct), key=lambda m: m.tokens_per_s)
    assert fastest.dtype == info.dtype


async def test_health_not_serving_before_engine_ready_then_serving(model_service: ModelService) -> None:
    assert model_service.first_health == health_pb2.HealthCheckResponse.NOT_SERVING
    async with grpc.aio.insecure_channel(model_service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="ragway.v1.ModelService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(model_service: ModelService) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(model_service.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            break
    assert {"ragway.v1.ModelService", "grpc.health.v1.Health"} <= names
