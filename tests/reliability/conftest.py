"""Fixtures of the reliability suite: a collector of figures printed at the end of the run, and a
model service, retrieval service and gateway of the suite's own, which its fault and drain tests
may kill, stop and restart without disturbing the session's shared stack."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from grpc_health.v1 import health_pb2

from tests.conftest import (
    ENGINE_READY_TIMEOUT,
    MODEL_MAX_RUNNING,
    MODEL_MAX_WAITING,
    Gateway,
    start_gateway,
)
from tests.utils.processes import Service, free_port, grpc_health, start, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
# Generous: the 2-core machine may be shared with other test runs.
MODEL_DRAIN_SECONDS = 30

# -- figures ---------------------------------------------------------------------------------------


@dataclass
class Figures:
    """What each reliability test measured, printed in the terminal summary whatever `-s` says."""

    lines: dict[str, list[str]] = field(default_factory=dict)

    def add(self, section: str, text: str) -> None:
        self.lines.setdefault(section, []).append(text)


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES.lines:
        return
    terminalreporter.section("reliability figures")
    for section, lines in _FIGURES.lines.items():
        terminalreporter.write_line(f"[{section}]")
        for line in lines:
            terminalreporter.write_line(f"  {line}")


# -- processes of the suite's own ------------------------------------------------------------------


def rss_bytes(process_id: int) -> int:
    """Resident memory of a process and all of its children (vLLM runs its engine in a child)."""
    try:
        parent = psutil.Process(process_id)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def kill_hard(service: Service) -> None:
    """SIGKILL a service and every process it started, as an OOM kill of its container would."""
    service.stop(signal.SIGKILL)


@dataclass
class OwnModel:
    """A model service on a fixed port, so a restart comes back at the address gateways know."""

    port: int
    metrics_port: int
    service: Service | None = None
    starts: int = 0
    name: str = "rel-model"  # of its log files
    host: str = "127.0.0.1"  # another loopback address (127.0.0.2, ...) stands for another pod

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def start(self) -> Service:
        self.starts += 1
        self.service = start(
            f"{self.name}-{self.starts}",
            "model",
            {
                "RAGWAY_MODEL_HOST": self.host,
                "RAGWAY_MODEL_PORT": str(self.port),
                "RAGWAY_MODEL_METRICS_PORT": str(self.metrics_port),
                "RAGWAY_MODEL_MAX_NUM_SEQS": str(MODEL_MAX_RUNNING),
                "RAGWAY_MODEL_MAX_WAITING": str(MODEL_MAX_WAITING),
                "RAGWAY_MODEL_DRAIN_SECONDS": str(MODEL_DRAIN_SECONDS),
                "RAGWAY_MODEL_KV_CACHE_GIB": "1",
                # No torch.compile: this engine restarts during the suite, and eager starts fastest.
                "RAGWAY_MODEL_ENFORCE_EAGER": "true",
            },
        )
        return self.service

    def wait_serving(self) -> None:
        assert self.service is not None
        wait_until(self.service, lambda: grpc_health(self.address) == SERVING, ENGINE_READY_TIMEOUT)

    def ensure_running(self) -> None:
        if self.service is None or not self.service.alive():
            self.start()
        self.wait_serving()

    def stop(self) -> None:
        if self.service is not None and self.service.alive():
            self.service.stop()

    @contextmanager
    def running(self) -> Iterator[OwnModel]:
        """Started and SERVING for the block, stopped after it."""
        self.start()
        try:
            self.wait_serving()
            yield self
        finally:
            self.stop()


@dataclass
class OwnRetrieval:
    port: int
    data_dir: Path
    service: Service | None = None
    starts: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Service:
        self.starts += 1
        self.service = start(
            f"rel-retrieval-{self.starts}",
            "retrieval",
            {
                "RAGWAY_DATA_DIR": str(self.data_dir),
                "RAGWAY_RETRIEVAL_PORT": str(self.port),
                "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
            },
        )
        wait_until(self.service, lambda: grpc_health(self.address) == SERVING, 300)
        return self.service

    def ensure_running(self) -> None:
        if self.service is None or not self.service.alive():
            self.start()

    def stop(self) -> None:
        if self.service is not None and self.service.alive():
            self.service.stop()


@pytest.fixture(scope="package")
def own_model() -> Iterator[OwnModel]:
    with OwnModel(free_port(), free_port()).running() as model:
        yield model


@pytest.fixture(scope="package")
def own_retrieval(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRetrieval]:
    retrieval = OwnRetrieval(free_port(), tmp_path_factory.mktemp("rel-retrieval"))
    retrieval.start()
    try:
        yield retrieval
    finally:
        retrieval.stop()


@pytest.fixture(scope="package")
def own_gateway(
    own_model: OwnModel, own_retrieval: OwnRetrieval, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway on the suite's own model and retrieval services."""
    gw = start_gateway(
        "rel-gateway-own", tmp_path_factory.mktemp("rel-gw-own"), own_model.address, own_retrieval.address
    )
    yield gw
    gw.service.stop()


def soak_seconds() -> float:
    return float(os.environ.get("RAGWAY_SOAK_SECONDS", "600"))
