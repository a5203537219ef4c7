"""What a person sees when starting ragway: one line for a bad setting, a few lines of progress per
service (the full logs stay in files), and no per-tensor weight warnings from vLLM. No engine."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from ragway.model.vllm_logging import ExpectedNarrowing
from ragway.stack import summary

RAGWAY = str(Path(sys.executable).parent / "ragway")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAGWAY, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_bad_admin_key_is_one_line_naming_the_setting_and_the_rule(tmp_path: Path) -> None:
    result = _run(["up", "--data-dir", str(tmp_path)], {"RAGWAY_ADMIN_KEY": "hunter2-secret"})
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [
        "ragway: bad setting RAGWAY_ADMIN_KEY: must start with rgw_ and hold at least 16 random characters"
    ]


def test_every_bad_model_setting_is_named_by_its_environment_variable() -> None:
    result = _run(["model", "prepare"], {"RAGWAY_MODEL_DTYPE": "fp8", "RAGWAY_MODEL_PORT": "x"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("ragway: bad setting RAGWAY_MODEL_DTYPE: Input should be") for line in lines)
    assert any(line.startswith("ragway: bad setting RAGWAY_MODEL_PORT:") for line in lines)


def _json_line(logger: str, level: str, msg: str) -> str:
    return json.dumps({"level": level, "logger": logger, "msg": msg, "service": "model"})


def test_the_console_shows_ragway_progress_and_problems_not_library_chatter() -> None:
    assert summary(_json_line("ragway.model.engine", "info", "engine ready: x")) == "engine ready: x"
    assert summary(_json_line("uvicorn.access", "info", '"GET /readyz HTTP/1.1" 200')) is None
    assert summary(_json_line("grpc", "warning", "slow")) == "warning: slow"
    vllm = "(EngineCore pid=1) INFO 12-01 05:26:17 [core.py:402] init engine took 2.45 s"
    assert summary(vllm) is None
    assert summary("RuntimeError: Engine core initialization failed") is not None
    assert summary("ragway: bad setting RAGWAY_ADMIN_KEY: must start with rgw_") is not None


def test_only_the_expected_weight_narrowing_warning_is_dropped() -> None:
    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, ("a", "b", "c"), None)

    narrowing = "Attempted to load weight %s with dtype %s into parameter with dtype %s"
    keep = ExpectedNarrowing()
    assert not keep.filter(record("vllm.model_executor.models.utils", narrowing))
    assert keep.filter(record("vllm.model_executor.models.utils", "Attempted to load nested weight %s %s %s"))
    assert keep.filter(record("vllm.worker", narrowing))
