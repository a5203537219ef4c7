"""The live stack for tests: one real model service (one vLLM engine) per session, a retrieval
service, and gateways on SQLite and on PostgreSQL — all real processes on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.utils.processes import (
    Service,
    free_port,
    grpc_health,
    start,
    start_gateway_process,
    wait_until,
)

ENGINE_READY_TIMEOUT = 600  # first start compiles the model; later starts hit the compile cache
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODEL_NAME = "SmolLM2-135M-Instruct"
# The test model service admits 16 running + 16 waiting requests, so the bound is reachable.
MODEL_MAX_RUNNING = 16
MODEL_MAX_WAITING = 16


@dataclass
class ModelService:
    address: str
    metrics_url: str
    first_health: int | None  # what health said before the engine was ready
    service: Service


@dataclass
class RetrievalService:
    address: str
    metrics_url: str
    data_dir: Path
    service: Service


@dataclass
class Gateway:
    url: str
    admin_key: str
    database_url: str
    data_dir: Path
    service: Service


@pytest.fixture(scope="session")
def model_service() -> Iterator[ModelService]:
    port, metrics_port = free_port(), free_port()
    service = start(
        "model",
        "model",
        {
            "RAGWAY_MODEL_PORT": str(port),
            "RAGWAY_MODEL_METRICS_PORT": str(metrics_port),
            "RAGWAY_MODEL_MAX_NUM_SEQS": str(MODEL_MAX_RUNNING),
            "RAGWAY_MODEL_MAX_WAITING": str(MODEL_MAX_WAITING),
            "RAGWAY_MODEL_DRAIN_SECONDS": "10",
        },
    )
    address = f"127.0.0.1:{port}"
    first: list[int | None] = []

    def serving() -> bool:
        status = grpc_health(address)
        if status is not None and not first:
            first.append(status)
        return status == health_pb2.HealthCheckResponse.SERVING

    try:
        wait_until(service, serving, ENGINE_READY_TIMEOUT)
    except BaseException:
        service.stop()
        raise
    yield ModelService(
        address, f"http://127.0.0.1:{metrics_port}/metrics", first[0] if first else None, service
    )
    service.stop()


@pytest.fixture(scope="session")
def retrieval_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RetrievalService]:
    data_dir = tmp_path_factory.mktemp("retrieval-data")
    port, metrics_port = free_port(), free_port()
    service = start(
        "retrieval",
        "retrieval",
        {
            "RAGWAY_DATA_DIR": str(data_dir),
            "RAGWAY_RETRIEVAL_PORT": str(port),
            "RAGWAY_RETRIEVAL_METRICS_PORT": str(metrics_port),
        },
    )
    address = f"127.0.0.1:{port}"
    try:
        wait_until(service, lambda: grpc_health(address) == health_pb2.HealthCheckResponse.SERVING, 300)
    except BaseException:
        service.stop()
        raise
    yield RetrievalService(address, f"http://127.0.0.1:{metrics_port}/metrics", data_dir, service)
    service.stop()


def start_gateway(
    name: str,
    data_dir: Path,
    model_addr: str,
    retrieval_addr: str,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Gateway:
    gw = start_gateway_process(
        name, data_dir, model_addr, retrieval_addr, database_url=database_url, env=extra_env
    )
    return Gateway(
        gw.url, gw.admin_key, database_url or f"sqlite:///{data_dir / 'ragway.db'}", data_dir, gw.service
    )


def reset_postgres() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(scope="session")
def gateway(
    model_service: ModelService, retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_gateway(
        "gateway-sqlite",
        tmp_path_factory.mktemp("gateway-sqlite"),
        model_service.address,
        retrieval_service.address,
    )
    yield gw
    gw.service.stop()


@pytest.fixture(scope="session")
def gateway_pg(
    model_service: ModelService, retrieval_service: RetrievalService, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    reset_postgres()
    gw = start_gateway(
        "gateway-postgres",
        tmp_path_factory.mktemp("gateway-pg"),
        model_service.address,
        retrieval_service.address,
        database_url=POSTGRES_URL,
    )
    yield gw
    gw.service.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def any_gateway(request: pytest.FixtureRequest) -> Gateway:
    """The same test against a gateway on SQLite and one on PostgreSQL."""
    return request.getfixturevalue("gateway" if request.param == "sqlite" else "gateway_pg")  # type: ignore[no-any-return]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the real engine — through `model_service` directly, through a
    gateway, or by starting a model service of its own — so `pytest -m "not engine"` is the fast tier."""
    engines = {"model_service", "own_model"}
    for item in items:
        if engines & set(getattr(item, "fixturenames", ())) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.engine)
