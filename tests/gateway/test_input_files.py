"""input_file parts of the Responses API through the official openai SDK against the real stack (the
real engine and tokenizer, the gateway's /v1/files storage): the document's text goes into the
message, is counted and billed as input tokens, and what ragway cannot read is a 400 naming the
part. The fast logic is in tests/inprocess/test_input_files_logic.py."""

from __future__ import annotations

import base64
from typing import Any

import openai
import pytest

from tests.conftest import MODEL_NAME, Gateway
from tests.utils.documents import minimal_pdf
from tests.utils.factories import Account, make_account
from tests.utils.openresponses import check_response

SECRET = "The launch code of the Quorvin lighthouse is amber-seven."
QUESTION = "What is the launch code of the Quorvin lighthouse?"


@pytest.fixture(scope="module")
def account(gateway: Gateway) -> Account:
    return make_account(gateway.url, gateway.admin_key)


def message(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [*parts, {"type": "input_text", "text": QUESTION}]}]


def tokens(account: Account, text: str) -> int:
    with account.http() as http:
        reply = http.post(
            "/tokenize", json={"model": MODEL_NAME, "prompt": text, "add_special_tokens": False}
        )
    assert reply.status_code == 200, reply.text
    return int(reply.json()["count"])


def test_an_uploaded_pdf_is_read_into_the_message_and_billed_as_input(account: Account) -> None:
    client = account.openai()
    file_id = client.files.create(file=("lighthouse.pdf", minimal_pdf(SECRET)), purpose="user_data").id
    bare = client.responses.create(model=MODEL_NAME, input=message(), max_output_tokens=4)
    read = client.responses.create(
        model=MODEL_NAME,
        input=message({"type": "input_file", "file_id": file_id}),  # type: ignore[list-item]
        max_output_tokens=4,
    )
    assert bare.usage is not None and read.usage is not None
    grown = read.usage.input_tokens - bare.usage.input_tokens
    # The document's tokens, plus the few of its fence (<file name="lighthouse.pdf"> ... </file>).
    assert tokens(account, SECRET) < grown <= tokens(account, SECRET) + 30
    # The message the model read holds the document's text, fenced, before the question.
    items = client.responses.input_items.list(read.id).data
    said = items[0].content[0].text  # type: ignore[union-attr]
    assert said.startswith('<file name="lighthouse.pdf">') and SECRET in said and said.endswith(QUESTION)
    # Billed as the prompt: the ledger holds both requests' input tokens.
    with account.http() as http:
        rows = http.get("/v1/usage").json()["data"]
    assert sum(r["prompt_tokens"] for r in rows) >= bare.usage.input_tokens + read.usage.input_tokens


def test_file_data_as_a_data_url_meets_the_schema(account: Account) -> None:
    markdown = f"# Lighthouse\n\n{SECRET}\n".encode()
    part = {
        "type": "input_file",
        "filename": "lighthouse.md",
        "file_data": "data:text/markdown;base64," + base64.b64encode(markdown).decode(),
    }
    with account.http() as http:
        reply = http.post(
            "/v1/responses", json={"model": MODEL_NAME, "input": message(part), "max_output_tokens": 4}
        )
    assert reply.status_code == 200, reply.text
    check_response(reply.json())


def test_another_users_file_is_not_found(gateway: Gateway, account: Account) -> None:
    file_id = account.openai().files.create(file=("mine.txt", SECRET.encode()), purpose="user_data").id
    stranger = make_account(gateway.url, gateway.admin_key).openai()
    with pytest.raises(openai.NotFoundError) as refused:
        stranger.responses.create(
            model=MODEL_NAME,
            input=message({"type": "input_file", "file_id": file_id}),  # type: ignore[list-item]
        )
    assert refused.value.body["param"] == "input.0.content.0.file_id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("part", "words"),
    [
        (
            {
                "type": "input_file",
                "filename": "deck.pptx",
                "file_data": "data:application/zip;base64,UEsDBA==",
            },
            "deck.pptx",
        ),
        ({"type": "input_image", "image_url": "https://example.com/cat.png"}, "text only"),
    ],
)
def test_a_part_ragway_cannot_read_is_a_400_naming_it(
    account: Account, part: dict[str, Any], words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        account.openai().responses.create(model=MODEL_NAME, input=message(part))  # type: ignore[arg-type]
    error = refused.value.body
    assert error["param"] == "input.0.content.0" and words in error["message"], error  # type: ignore[index]
