"""A misspelled RAGWAY_* variable is reported at start-up with the closest valid name, by every
service; a variable any service reads is never reported (one environment feeds the whole stack)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragway.core.env_check import unknown_variables
from tests.utils.processes import free_port, start, wait_until

# Valid for some service, each under another service's prefix, plus a nested gateway setting.
VALID_ELSEWHERE = {
    "RAGWAY_DEFAULT_MAX_TOKENS": "64",
    "RAGWAY_MODEL_DTYPE": "float32",
    "RAGWAY_RETRIEVAL_BACKEND": "qdrant",
    "RAGWAY_PRICES__smol__prompt": "1",
    "RAGWAY_API_KEY": "rgw_for_the_cli",
}


def test_misspellings_are_named_with_the_closest_setting_of_any_service() -> None:
    environ = {
        **VALID_ELSEWHERE,
        "RAGWAY_DEFAULT_MAX_TOKEN": "64",
        "RAGWAY_MODEL_MAX_NUM_SEQ": "4",
        "RAGWAY_RETREIVAL_QDRANT_URL": "http://q",
        "RAGWAY_SOMETHING_ELSE": "1",
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        ("RAGWAY_DEFAULT_MAX_TOKEN", "RAGWAY_DEFAULT_MAX_TOKENS"),
        ("RAGWAY_MODEL_MAX_NUM_SEQ", "RAGWAY_MODEL_MAX_NUM_SEQS"),
        ("RAGWAY_RETREIVAL_QDRANT_URL", "RAGWAY_RETRIEVAL_QDRANT_URL"),
        ("RAGWAY_SOMETHING_ELSE", None),
    ]


def _warnings(log: str) -> list[str]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [
        line["msg"] for line in lines if line["level"] == "warning" and "not a ragway setting" in line["msg"]
    ]


@pytest.mark.parametrize("service", ["gateway", "model", "retrieval"])
def test_each_service_warns_at_start_up(service: str, tmp_path: Path) -> None:
    env = {
        **VALID_ELSEWHERE,
        "RAGWAY_DATA_DIR": str(tmp_path),
        "RAGWAY_PORT": str(free_port()),
        "RAGWAY_MODEL_PORT": str(free_port()),
        "RAGWAY_MODEL_METRICS_PORT": "0",
        # Never reached: the service is stopped once it has warned, before any engine would start.
        "RAGWAY_MODEL_NAME": str(tmp_path / "no-model"),
        "RAGWAY_RETRIEVAL_PORT": str(free_port()),
        "RAGWAY_RETRIEVAL_METRICS_PORT": "0",
        "RAGWAY_MODEL_MAX_NUM_SEQ": "4",
    }
    running = start(f"env-check-{service}", service, env, tmp_path / f"{service}.log")
    try:
        wait_until(running, lambda: bool(_warnings(running.log())), 120)
    finally:
        running.stop()
    assert _warnings(running.log()) == [
        "RAGWAY_MODEL_MAX_NUM_SEQ is not a ragway setting and is ignored; "
        "did you mean RAGWAY_MODEL_MAX_NUM_SEQS?"
    ]
