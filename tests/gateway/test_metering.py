"""The metering table of tests/inprocess/test_metering.py on the real stack: the real vLLM engine
(the session's model service), the real retrieval service (its embedder, Qdrant, its chunker) and a
gateway process of this module's own whose limiter is Redis. Every spending route sends one request
and must leave usage records equal to what its response reports (or what the embedder read), a
ledger that explains them, one request of RPM and those tokens of TPM."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODEL_NAME, ModelService, RetrievalService, start_gateway
from tests.inprocess.test_metering import REDIS_URL, SPENDING, Stack, check_metered


@pytest.fixture(scope="module")
def live_stack(
    model_service: ModelService, retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    gateway = start_gateway(
        "gateway-metering",
        tmp_path_factory.mktemp("gateway-metering"),
        model_service.address,
        retrieval_service.address,
        extra_env={"RAGWAY_REDIS_URL": REDIS_URL, "RAGWAY_INGEST_POLL_SECONDS": "0.2"},
    )
    try:
        with httpx.Client(base_url=gateway.url, timeout=120) as http:
            yield Stack(http, gateway.admin_key, gateway.database_url, MODEL_NAME)
    finally:
        gateway.service.stop()


@pytest.mark.parametrize("route", SPENDING, ids=lambda r: f"{r[0]} {r[1]}")
def test_every_spending_route_is_metered_on_the_real_stack(live_stack: Stack, route: tuple[str, str]) -> None:
    check_metered(live_stack, route)
