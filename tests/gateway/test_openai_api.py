"""The gateway through the official openai SDK, against the real model service."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import MODEL_NAME, Gateway
from tests.utils.factories import Account, make_account


@pytest.fixture(scope="module")
def account(gateway: Gateway) -> Account:
    return make_account(gateway.url, gateway.admin_key)


def test_models_lists_the_served_model(account: Account) -> None:
    models = account.openai().models.list()
    by_mode: dict[str, list[str]] = {}
    for m in models.data:
        by_mode.setdefault((m.model_extra or {}).get("mode", "chat"), []).append(m.id)
    # The chat model, and the retrieval service's embedder that /v1/embeddings routes to.
    assert by_mode == {"chat": [MODEL_NAME], "embedding": ["all-MiniLM-L6-v2"]}
    assert account.openai().models.retrieve(MODEL_NAME).id == MODEL_NAME


def test_chat_completion(account: Account) -> None:
    reply = account.openai().chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
    )
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_with_usage(account: Account) -> None:
    stream = account.openai().chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_wire_format_ends_with_done(account: Account) -> None:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 5,
        "stream": True,
    }
    with account.http() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_text_completion_with_logprobs(account: Account) -> None:
    reply = account.openai().completions.create(
        model=MODEL_NAME, prompt="The capital of France is", max_tokens=3, temperature=0, logprobs=2
    )
    assert "Paris" in reply.choices[0].text
    assert reply.choices[0].logprobs is not None and len(reply.choices[0].logprobs.tokens) == 3


def test_chat_logprobs_and_n(account: Account) -> None:
    reply = account.openai().chat.completions.create(
        model=MODEL_NAME,
        messages=[{"role": "user", "content": "Say yes."}],
        max_tokens=4,
        n=2,
        seed=1,
        logprobs=True,
        top_logprobs=2,
    )
    assert len(reply.choices) == 2
    content = reply.choices[0].logprobs.content
    assert content and len(content[0].top_logprobs) >= 1


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="rgw_" + "x" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    missing = httpx.get(f"{gateway.url}/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found(account: Account) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        account.openai().chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 9}, "n"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_bad_parameters_are_bad_request_naming_the_param(
    account: Account, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        account.openai().chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], **extra
        )  # type: ignore[call-overload]
    assert info.value.body["param"] == param  # type: ignore[index]


def test_oversized_prompt_is_bad_request_with_counts(account: Account) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        account.openai().chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "apple " * 5000}], max_tokens=10
        )
    assert "4096" in info.value.message


def test_malformed_bodies_are_400_in_openai_shape(account: Account) -> None:
    with account.http() as http:
        for raw in (b"{not json", b"\xff\xfe\x00garbage", b"[" * 100_000 + b"]" * 100_000):
            response = http.post(
                "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code in (400, 413), response.text
            assert set(response.json()["error"]) >= {"message", "type", "code"}
        huge = http.post(
            "/v1/chat/completions", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413


def test_the_readmes_sdk_example_runs_as_written(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    account = make_account(gateway.url, gateway.admin_key)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    [example] = [b for b in blocks if "conversation_id" in b and "from openai import OpenAI" in b]
    # Only the address and the key are the reader's own; the rest runs exactly as printed.
    code = example.replace("http://127.0.0.1:8000/v1", f"{account.base_url}/v1")
    exec(compile(code, "README.md", "exec"), {"KEY": account.key})
    printed = capsys.readouterr().out.splitlines()
    assert printed and "completion_tokens" in printed[-1], "the stream ends with its usage"
    [conversation] = account.http().get("/v1/conversations").json()["data"]
    messages = account.http().get(f"/v1/conversations/{conversation['id']}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [
        "What is the capital of France?",
        "And of Italy?",
    ]
