"""Fixtures for the deployment tests: the chart rendered with the default and the production
values, and the parsed docker-compose.yml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.helpers import COMPOSE_FILE, production_values, render


@pytest.fixture(scope="session", params=["default", "production"])
def values_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def rendered(values_name: str) -> list[dict[str, Any]]:
    return render(production_values() if values_name == "production" else None)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())
