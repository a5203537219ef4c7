"""The compose stack, built and started once for tests/compose (marker `compose`, `make
compose-test`), and taken down at the end with its volumes, asserting nothing of it is left.

Two model engines run in it; the machine-wide engine lock (/tmp/ragway-engine.lock, the one the
engine tests take) is held while they do, so no other engine starves them."""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator

import pytest

from tests.compose.stack import ROOT, Stack

ENGINE_LOCK = "/tmp/ragway-engine.lock"
START_TIMEOUT = 900  # two engines, the embedder and the databases on 2 cores, from cold images


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    subprocess.run(["make", "images"], cwd=ROOT, check=True)  # cached layers: seconds when nothing changed
    with open(ENGINE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stack = Stack.new()
        try:
            try:
                stack.compose("up", "-d", "--no-build", timeout=START_TIMEOUT)
                stack.wait_healthy(["model", "model-2", "gateway", "gateway-2", "proxy"], START_TIMEOUT)
                stack.wait_ready(120)
            except Exception:
                print(stack.logs())  # what the containers said, before `down` removes them
                raise
            yield stack
        finally:
            stack.compose("--profile", "milvus", "down", "-v", "--remove-orphans", timeout=300)
            left = stack.leftovers()
            assert left == {"containers": [], "networks": [], "volumes": []}, f"compose down left {left}"
