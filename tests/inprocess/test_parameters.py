"""Every parameter of OpenAI's chat-completions request is honoured or refused by name — never
accepted and ignored. The list of parameters is the official SDK's own, so a parameter OpenAI adds
later fails here until ragway decides what to do with it. Honoured ones are proven to reach the
model-service request (the stated fake records it); the engine's use of them is proven against the
real engine in tests/model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from openai.types.chat.completion_create_params import CompletionCreateParamsBase

from ragway.v1 import model_pb2
from tests.inprocess.conftest import InProcess
from tests.utils.fakes import FAKE_MODEL

Request = model_pb2.GenerateRequest
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

# parameter -> (a value a client sends, what the model-service request shows for it)
HONOURED: dict[str, tuple[Any, Callable[[Request], bool]]] = {
    "messages": (
        [{"role": "user", "content": "Hi there"}],
        lambda r: r.chat.messages[-1].content == "Hi there",
    ),
    "model": (FAKE_MODEL, lambda r: True),  # routing: a wrong one is a 404 (test_chat_logic)
    "frequency_penalty": (0.5, lambda r: r.sampling.frequency_penalty == 0.5),
    "presence_penalty": (-0.5, lambda r: r.sampling.presence_penalty == -0.5),
    "logit_bias": ({"42": 5}, lambda r: r.sampling.logit_bias[42] == 5),
    "logprobs": (True, lambda r: r.sampling.HasField("logprobs")),
    "top_logprobs": (3, lambda r: r.sampling.logprobs == 3),
    "max_completion_tokens": (7, lambda r: r.sampling.max_tokens == 7),
    "max_tokens": (9, lambda r: r.sampling.max_tokens == 9),
    "n": (2, lambda r: r.sampling.n == 2),
    "seed": (1234, lambda r: r.sampling.seed == 1234),
    "stop": (["\n\n"], lambda r: list(r.sampling.stop) == ["\n\n"]),
    "temperature": (0.3, lambda r: abs(r.sampling.temperature - 0.3) < 1e-6),
    "top_p": (0.9, lambda r: abs(r.sampling.top_p - 0.9) < 1e-6),
    "tools": ([TOOL], lambda r: [t.name for t in r.chat.tools] == ["get_weather"]),
    "tool_choice": ("required", lambda r: r.chat.tool_choice.mode == model_pb2.TOOL_CHOICE_MODE_REQUIRED),
    "parallel_tool_calls": (
        False,
        lambda r: r.chat.HasField("parallel_tool_calls") and not r.chat.parallel_tool_calls,
    ),
    "response_format": ({"type": "json_object"}, lambda r: r.sampling.json_object),
    # What OpenAI documents for these is not a sampling change; each is asserted by its own test.
    "store": (True, lambda r: True),  # test_each_rag_turn_extends_the_previous_prompt_token_for_token
    "metadata": ({"team": "search"}, lambda r: True),  # test_metadata_is_kept_with_the_stored_exchange
    "stream_options": ({"include_usage": True}, lambda r: True),  # test_openai_api.py streams usage
    "user": ("user-1234", lambda r: True),  # an end-user id for abuse monitoring: accepted, logged
    "safety_identifier": ("hash-1234", lambda r: True),  # the same, under its new name
    "prompt_cache_key": ("team-a", lambda r: True),  # a hint: vLLM's prefix cache needs none
    "prompt_cache_retention": ("in_memory", lambda r: True),  # the only retention vLLM's cache has
    "modalities": (["text"], lambda r: True),  # text is what the model makes
    "service_tier": ("default", lambda r: True),  # the one tier there is
}
# parameter -> a value ragway cannot honour
REFUSED: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "mp3"},
    "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object"}}],
    "moderation": {"model": "omni-moderation-latest"},
    "prediction": {"type": "content", "content": "x"},
    "prompt_cache_options": {"ttl": "24h"},
    "reasoning_effort": "high",
    "verbosity": "low",
    "web_search_options": {},
}
# values of honoured parameters that ragway still refuses
REFUSED_VALUES: dict[str, Any] = {
    "modalities": ["text", "audio"],
    "service_tier": "priority",
    "prompt_cache_retention": "24h",
    "stream_options": {"include_obfuscation": True},
}


def test_every_sdk_parameter_is_classified() -> None:
    sdk = set(CompletionCreateParamsBase.__annotations__)
    assert sdk == set(HONOURED) | set(REFUSED), "a new OpenAI parameter: honour it or refuse it"


def _post(inprocess: InProcess, headers: dict[str, str], **fields: Any) -> Any:
    body = {"model": FAKE_MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    if "tool_choice" in fields or "parallel_tool_calls" in fields:
        body.setdefault("tools", [TOOL])
    if "top_logprobs" in fields:
        body["logprobs"] = True
    return inprocess.client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.mark.parametrize("name", sorted(HONOURED))
def test_honoured_parameters_reach_the_model_service(inprocess: InProcess, name: str) -> None:
    value, shows = HONOURED[name]
    reply = _post(inprocess, inprocess.account(), **{name: value})
    assert reply.status_code == 200, reply.text
    assert shows(inprocess.model.requests[-1]), f"{name} did not reach the model service"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_parameters_are_a_400_naming_them(inprocess: InProcess, name: str) -> None:
    reply = _post(inprocess, inprocess.account(), **{name: REFUSED[name]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == name and name in error["message"]
    assert inprocess.model.requests == []


@pytest.mark.parametrize("name", sorted(REFUSED_VALUES))
def test_values_ragway_cannot_honour_are_a_400_naming_the_parameter(inprocess: InProcess, name: str) -> None:
    reply = _post(inprocess, inprocess.account(), **{name: REFUSED_VALUES[name]})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"].split(".")[0] == name


def test_an_image_part_on_a_text_model_is_a_400_naming_it(inprocess: InProcess) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    reply = _post(inprocess, inprocess.account(), messages=[{"role": "user", "content": [image]}])
    assert reply.status_code == 400
    assert reply.json()["error"]["param"].startswith("messages.0.content")
    assert "image_url" in reply.json()["error"]["message"]


def test_an_unknown_parameter_is_a_400_naming_it(inprocess: InProcess) -> None:
    reply = _post(inprocess, inprocess.account(), temprature=0.5)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "temprature"


def test_metadata_is_kept_with_the_stored_exchange(inprocess: InProcess) -> None:
    headers = inprocess.account()
    reply = _post(inprocess, headers, store=True, metadata={"team": "search"})
    conversation = reply.json()["conversation_id"]
    detail = inprocess.client.get(f"/v1/conversations/{conversation}", headers=headers).json()
    assert detail["messages"][-1]["metadata"] == {"team": "search"}


# vLLM's own sampling extensions, as `vllm serve` takes them (its benchmark client sends ignore_eos
# and repetition_penalty): parameter -> (value, what the model-service request shows)
VLLM_EXTENSIONS: dict[str, tuple[Any, Callable[[Request], bool]]] = {
    "ignore_eos": (True, lambda r: r.sampling.ignore_eos),
    "repetition_penalty": (1.0, lambda r: r.sampling.repetition_penalty == 1.0),
    "top_k": (40, lambda r: r.sampling.top_k == 40),
    "min_p": (0.05, lambda r: abs(r.sampling.min_p - 0.05) < 1e-6),
}


@pytest.mark.parametrize("name", sorted(VLLM_EXTENSIONS))
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_vllm_sampling_extensions_reach_the_model_service(
    inprocess: InProcess, route: str, name: str
) -> None:
    value, shows = VLLM_EXTENSIONS[name]
    prompt = {"messages": [{"role": "user", "content": "Hi"}]} if "chat" in route else {"prompt": "Hi"}
    body = {"model": FAKE_MODEL, **prompt, "max_tokens": 4, name: value}
    reply = inprocess.client.post(route, json=body, headers=inprocess.account())
    assert reply.status_code == 200, reply.text
    assert shows(inprocess.model.requests[-1]), f"{name} did not reach the model service"
