"""vLLM's own log lines, minus the ones that are expected and say nothing to an operator.

The bundled model is converted once into float32 weights, the master copy every dtype is cut
from; an engine that runs float16 or bfloat16 then logs "Attempted to load weight ... float32 into
float16" once per tensor (about 270 lines for SmolLM2). That narrowing is the plan, not a fault.
vLLM configures logging itself in each process it spawns, so the filter travels as a logging
config file (VLLM_LOGGING_CONFIG_PATH) that is vLLM's default plus this filter. This module
imports nothing from vLLM or ragway: logging's dictConfig imports it while vLLM itself loads.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path

NARROWING_LOGGER = "vllm.model_executor.models.utils"
NARROWING_PREFIX = "Attempted to load weight "


class ExpectedNarrowing(logging.Filter):
    """Drops vLLM's per-tensor warning about loading float32 weights into a narrower dtype."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == NARROWING_LOGGER
            and isinstance(record.msg, str)
            and record.msg.startswith(NARROWING_PREFIX)
            and "into parameter" in record.msg
        )


def install() -> None:
    """Point vLLM (this process's future imports and every engine process) at its default logging
    config plus ExpectedNarrowing. Leaves an operator's own VLLM_LOGGING_CONFIG_PATH alone."""
    if "VLLM_LOGGING_CONFIG_PATH" in os.environ or os.environ.get("VLLM_CONFIGURE_LOGGING") == "0":
        return
    from vllm.logger import DEFAULT_LOGGING_CONFIG

    config = copy.deepcopy(DEFAULT_LOGGING_CONFIG)
    config["filters"] = {"expected_narrowing": {"()": f"{__name__}.ExpectedNarrowing"}}
    config["handlers"]["vllm"]["filters"] = ["expected_narrowing"]
    path = Path(tempfile.gettempdir()) / f"ragway-vllm-logging-{os.getuid()}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config))
    os.replace(tmp, path)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
