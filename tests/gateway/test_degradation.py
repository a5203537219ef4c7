"""The model service down: generation answers 503, history keeps working."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import MODEL_NAME, Gateway, RetrievalService, start_gateway
from tests.utils.factories import make_account
from tests.utils.processes import free_port


@pytest.fixture(scope="module")
def gateway_without_model(
    retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        "gateway-no-model",
        tmp_path_factory.mktemp("gw-no-model"),
        f"127.0.0.1:{free_port()}",  # nothing listens there
        retrieval_service.address,
    )
    yield gw
    gw.service.stop()


def test_model_service_down_is_503_and_history_still_served(gateway_without_model: Gateway) -> None:
    account = make_account(gateway_without_model.url, gateway_without_model.admin_key)
    with pytest.raises(openai.InternalServerError) as info:
        account.openai().chat.completions.create(
            model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 503 and "model service" in info.value.message
    with account.http() as http:
        assert http.get("/v1/conversations").status_code == 200
        assert http.get("/v1/me").status_code == 200
        ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["model"] is False
