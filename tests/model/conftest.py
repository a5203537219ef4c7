from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from ragway.v1 import model_pb2_grpc
from tests.conftest import ModelService


@pytest.fixture
async def stub(model_service: ModelService) -> AsyncIterator[model_pb2_grpc.ModelServiceStub]:
    async with grpc.aio.insecure_channel(model_service.address) as channel:
        yield model_pb2_grpc.ModelServiceStub(channel)
