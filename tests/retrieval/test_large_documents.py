"""A 20 MB document through gRPC into the embedded Qdrant engine, streamed batch by batch.

Embedding 20 MB for real takes over ten minutes on two cores, so this test swaps in an embedder
that keeps the real tokenizer (chunking is real) but returns instant pseudo-random vectors, and
counts how many embedding arrays are alive whenever a new batch is embedded. That count is the
property under test: the service must not hold every embedding of the document at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import grpc
import numpy as np

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.retrieval.config import RetrievalSettings
from ragway.retrieval.embedder import Embedder
from ragway.retrieval.server import start_server
from ragway.v1 import retrieval_pb2 as pb
from ragway.v1 import retrieval_pb2_grpc
from tests.retrieval.corpus import TOPICS

TWENTY_MB = 20 * 1024 * 1024


class CountingEmbedder(Embedder):
    """Fake vectors, real tokenizer; records the embedding arrays alive at each call."""

    def __init__(self, real: Embedder) -> None:  # No super().__init__: no model to load.
        self.real = real
        self.name, self.dimension, self.max_tokens = real.name, real.dimension, real.max_tokens
        self._batches: list[weakref.ref[np.ndarray]] = []
        self.max_alive = 0
        self.embedded = 0
        self._rng = np.random.default_rng(0)

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.real.token_offsets(text)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._batches = [ref for ref in self._batches if ref() is not None]
        self.max_alive = max(self.max_alive, len(self._batches))
        vectors = self._rng.normal(size=(len(texts), self.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        self._batches.append(weakref.ref(vectors))
        self.embedded += len(texts)
        return vectors

    async def embed_async(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)


def big_document() -> str:
    paragraphs = [f"Paragraph {i}. {TOPICS[i % len(TOPICS)][1]}" for i in range(200_000)]
    text = "\n\n".join(paragraphs)
    return text[: text.rfind(" ", 0, TWENTY_MB)]


async def test_a_20_mb_document_is_stored_without_holding_every_embedding(
    settings: RetrievalSettings, embedder: Embedder
) -> None:
    counting = CountingEmbedder(embedder)
    running = await start_server(settings, port=0, embedder=counting)
    try:
        address = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            await stub.CreateCollection(pb.CreateCollectionRequest(name="big"))
            text = big_document()
            assert len(text.encode()) > 19 * 1024 * 1024
            doc = pb.DocumentInput(
                id="big", text=text, chunking=pb.ChunkingOptions(chunk_tokens=250, overlap_tokens=10)
            )
            reply = await stub.UpsertDocuments(pb.UpsertDocumentsRequest(collection="big", documents=[doc]))
            chunks = reply.chunks_written
            assert chunks > 10_000
            assert await running.store.count("big", ["big"]) == chunks == counting.embedded
            info = await stub.DescribeCollection(pb.DescribeCollectionRequest(name="big"))
            assert (info.vector_count, info.document_count) == (chunks, 1)
            assert counting.max_alive <= 2, f"{counting.max_alive} embedding batches were alive at once"
            stored = await stub.GetDocument(pb.GetDocumentRequest(collection="big", id="big"))
            assert [c.index for c in stored.chunks] == list(range(chunks))
            assert stored.chunks[-1].text.split()[-1] == text.split()[-1]
    finally:
        await running.stop()
