"""The in-process tier: the real gateway app (real SQLite, real auth, billing and history) in this
process through FastAPI's TestClient, with stated fakes at the gRPC boundary (tests/utils/fakes.py)
put in by `app.dependency_overrides`. No engine starts: `pytest -m "not engine"` runs these fast."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from ragway.gateway.app import create_app
from ragway.gateway.core import deps
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.generation.service import GenerationService
from tests.utils.db import fresh_postgres
from tests.utils.fakes import FakeModelClient, FakeRetrievalClient, fake_router

ADMIN_KEY = "rgw_" + "a" * 43


@dataclass
class InProcess:
    client: TestClient
    model: FakeModelClient
    retrieval: FakeRetrievalClient

    def account(self, credits: float = 100.0, **key_fields: object) -> dict[str, str]:
        """A new user with a key; the Authorization header to act as them."""
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        user = self.client.post(
            "/v1/admin/users", json={"name": f"u{uuid.uuid4().hex[:12]}", "credits": credits}, headers=admin
        )
        assert user.status_code == 201, user.text
        key = self.client.post(
            "/v1/admin/keys", json={"user_id": user.json()["id"], **key_fields}, headers=admin
        )
        assert key.status_code == 201, key.text
        return {"Authorization": f"Bearer {key.json()['key']}"}


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[InProcess]:
    yield from inprocess_app(tmp_path, None)


@pytest.fixture(params=["sqlite", "postgres"])
def inprocess_any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcess]:
    """The in-process gateway on SQLite and on a fresh PostgreSQL database (127.0.0.1:5432)."""
    url = fresh_postgres("ragway_inprocess") if request.param == "postgres" else None
    yield from inprocess_app(tmp_path, url)


def inprocess_app(tmp_path: Path, database_url: str | None) -> Iterator[InProcess]:
    settings = GatewaySettings(
        data_dir=tmp_path,
        admin_key=SecretStr(ADMIN_KEY),
        frontend_dir=tmp_path / "none",
        database_url=SecretStr(database_url) if database_url else None,
    )
    app = create_app(settings)
    model, retrieval = FakeModelClient(), FakeRetrievalClient()
    with TestClient(app) as client:
        models = fake_router(settings, {model.address: model})
        generation = GenerationService(settings, app.state.sessions, models, app.state.limiter)
        app.dependency_overrides[deps.get_models] = lambda: models
        app.dependency_overrides[deps.get_retrieval_client] = lambda: retrieval
        app.dependency_overrides[deps.get_generation] = lambda: generation
        yield InProcess(client, model, retrieval)
