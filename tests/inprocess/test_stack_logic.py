"""`ragway up`'s logic: which model services it starts for a model table, and how it restarts a
child that exits (backoff, one line each, giving up). Children here are real processes that exit
at once, and time is passed in; the whole heal on a real stack: tests/stack/test_restart.py."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ragway.gateway.catalog.model_table import default_table, parse_model_table
from ragway.model.liveness import ENGINE_FAILED_EXIT
from ragway.stack import (
    RESTART_BACKOFF,
    STABLE_SECONDS,
    USAGE_EXIT,
    Child,
    LocalModel,
    local_models,
    supervise,
)


def test_without_a_models_file_one_model_service_is_started_at_the_model_address() -> None:
    assert local_models(default_table("127.0.0.1:50051")) == [LocalModel("model", "", "127.0.0.1:50051")]


def test_one_model_service_per_local_replica_serving_its_models_name() -> None:
    table = parse_model_table(
        {
            "models": [
                {"name": "small", "replicas": ["127.0.0.1:50061", "localhost:50062"]},
                {"name": "large", "replicas": ["127.0.0.1:50071", "gpu-box:50051"]},
                {"name": "remote", "replicas": ["dns:///remote-headless:50051"]},
            ]
        },
        "test",
    )
    assert local_models(table) == [
        LocalModel("model-small-1", "small", "127.0.0.1:50061"),
        LocalModel("model-small-2", "small", "localhost:50062"),
        LocalModel("model-large", "large", "127.0.0.1:50071"),
    ]


def test_a_single_local_model_keeps_the_plain_name() -> None:
    table = parse_model_table(
        {
            "models": [
                {"name": "small", "replicas": ["127.0.0.1:50061"]},
                {"name": "big", "replicas": ["h:1"]},
            ]
        },
        "test",
    )
    assert local_models(table) == [LocalModel("model", "small", "127.0.0.1:50061")]


def _exiting(code: int) -> Callable[[Child], None]:
    """A spawn that starts a real process exiting with `code` at once: a service that crashes."""

    def spawn(child: Child) -> None:
        child.process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        child.process.wait()
        child.restart_at = None

    return spawn


def _crashed_child(tmp_path: Path, code: int, started_at: float = 0.0) -> Child:
    child = Child("model", "model", {}, tmp_path / "model.log", verbose=False, started_at=started_at)
    _exiting(code)(child)
    return child


def test_a_crashing_child_is_restarted_with_growing_backoff_then_given_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child, now, delays = _crashed_child(tmp_path, ENGINE_FAILED_EXIT), 0.0, []
    while (gave_up := supervise([child], now, _exiting(ENGINE_FAILED_EXIT))) is None:
        if child.restart_at is not None and child.restart_at > now:
            delays.append(child.restart_at - now)
            now = child.restart_at
        child.started_at = now
    assert gave_up is child
    assert delays == list(RESTART_BACKOFF)
    lines = [line for line in capsys.readouterr().out.splitlines() if "restarting it" in line]
    assert len(lines) == len(RESTART_BACKOFF), "one console line per restart"
    assert lines[0] == "model exited (its engine failed); restarting it in 1 s (restart 1 in a row)"


def test_a_crash_after_a_stable_run_starts_the_backoff_over(tmp_path: Path) -> None:
    child = _crashed_child(tmp_path, 1)
    child.restarts = 4  # four quick crashes before this run
    child.started_at = 0.0
    assert supervise([child], STABLE_SECONDS + 1, _exiting(1)) is None
    assert (child.restarts, child.restart_at) == (1, STABLE_SECONDS + 1 + RESTART_BACKOFF[0])


def test_a_bad_setting_stops_the_stack_without_restarts(tmp_path: Path) -> None:
    child = _crashed_child(tmp_path, USAGE_EXIT)
    assert supervise([child], 1.0, _exiting(USAGE_EXIT)) is child
    assert child.restart_at is None
