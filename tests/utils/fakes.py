"""Stated fakes at the gRPC boundary, for the in-process tier of gateway tests.

They stand in for the model and retrieval services so pure gateway logic (auth, limits, errors,
response shapes, prompt fitting, RAG ordering) runs in milliseconds. They are not the engine: every
behaviour a user sees is also proven against the real services in the live-stack tests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragway.core.errors import DeadlineExceeded, InvalidArgument, NotFound, RagwayError, Unavailable
from ragway.gateway.catalog.model_router import ModelRouter
from ragway.gateway.catalog.model_table import ModelTable, default_table
from ragway.gateway.clients.model import PassageScores, PromptSize
from ragway.gateway.clients.retrieval import (
    CollectionStats,
    Condition,
    DocumentUpload,
    EmbeddingModel,
    Embeddings,
    Filter,
    IndexSettings,
    RetrievedChunk,
    SearchSettings,
    ServiceInfo,
    StoredDocument,
)
from ragway.gateway.core.config import GatewaySettings
from ragway.v1 import model_pb2

FAKE_MODEL = "fake-model"


def fake_tokens(text: str) -> int:
    """One token per word: enough to make prompt fitting decisions visible."""
    return len(text.split())


def overlap_relevance(query: str, passage: str) -> float:
    """The fake scorer's rule: the log of the smoothed share of the query's words in the passage
    (the simulated engine's stand-in too; not a model's judgement)."""
    words = query.lower().split()
    found = sum(1 for w in words if w in passage.lower().split())
    return math.log((found + 1) / (len(words) + 2))


@dataclass
class FakeModelClient:
    """Answers every prompt with `answer`, one word per token; counts what it was asked."""

    answer: str = "Hello from the fake model"
    max_model_len: int = 4096
    # When set and the request offers tools, the answer is this call (name, arguments JSON), its
    # arguments in two fragments, ending with FINISH_REASON_TOOL_CALLS.
    tool_call: tuple[str, str] | None = None
    requests: list[model_pb2.GenerateRequest] = field(default_factory=list)
    measured: list[model_pb2.ChatInput] = field(default_factory=list)  # the chats Tokenize sized
    address: str = "fake:0"
    cached: int = 0  # prompt tokens it says its prefix cache served (at most the prompt)
    reported_load: model_pb2.Load = field(default_factory=model_pb2.Load)  # what GetLoad answers
    # Score (the LLM reranker): the rule, the calls (query, passages, passage tokens, timeout), and
    # whether to answer as a call past its deadline.
    score_rule: Callable[[str, str], float] = overlap_relevance
    scored: list[tuple[str, list[str], int, float | None]] = field(default_factory=list)
    score_too_slow: bool = False
    device: str = "cpu"  # where it says its engine runs (ranker "auto" reranks on GPUs)

    async def info(self) -> model_pb2.ModelInfo:
        return model_pb2.ModelInfo(
            name=FAKE_MODEL, max_model_len=self.max_model_len, dtype="float32", device=self.device
        )

    async def serving(self, timeout: float = 2.0) -> bool:
        return True

    async def measure_chat(self, chat: model_pb2.ChatInput) -> PromptSize:
        self.measured.append(chat)
        per = [fake_tokens(m.content) + 2 for m in chat.messages]  # +2: the template's role markers
        return PromptSize(total=sum(per), per_message=per)

    async def count_text_tokens(self, text: str) -> int:
        return fake_tokens(text)

    async def tokenize(self, request: model_pb2.TokenizeRequest) -> model_pb2.TokenizeResponse:
        """One id per character (its code point): round-trips through detokenize."""
        text = request.text if request.HasField("text") else "".join(m.content for m in request.chat.messages)
        ids = [ord(c) for c in text]
        return model_pb2.TokenizeResponse(ids=ids, count=len(ids), max_model_len=self.max_model_len)

    async def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        self.requests.append(request)
        prompt = sum(fake_tokens(m.content) + 2 for m in request.chat.messages) or fake_tokens(request.text)
        yield model_pb2.GenerateResponse(request_id=request.request_id, prompt_tokens=prompt)
        if self.tool_call is not None and request.chat.tools:
            name, arguments = self.tool_call
            half = len(arguments) // 2
            first = model_pb2.ChoiceDelta(
                index=0,
                token_ids=[1],
                tool_calls=[
                    model_pb2.ToolCallDelta(index=0, id="call_fake0", name=name, arguments=arguments[:half])
                ],
            )
            last = model_pb2.ChoiceDelta(
                index=0,
                token_ids=[2],
                tool_calls=[model_pb2.ToolCallDelta(index=0, arguments=arguments[half:])],
                finish_reason=model_pb2.FINISH_REASON_TOOL_CALLS,
            )
            yield model_pb2.GenerateResponse(request_id=request.request_id, choices=[first])
            end = model_pb2.GenerateResponse(request_id=request.request_id, choices=[last])
            end.usage.CopyFrom(model_pb2.Usage(prompt_tokens=prompt, completion_tokens=2))
            yield end
            return
        words = self.answer.split()
        limit = request.sampling.max_tokens or len(words)
        for i, word in enumerate(words[:limit]):
            last = i == min(len(words), limit) - 1
            delta = model_pb2.ChoiceDelta(index=0, text=(" " if i else "") + word, token_ids=[i + 1])
            if last:
                delta.finish_reason = (
                    model_pb2.FINISH_REASON_STOP if limit >= len(words) else model_pb2.FINISH_REASON_LENGTH
                )
            message = model_pb2.GenerateResponse(request_id=request.request_id, choices=[delta])
            if last:
                message.usage.CopyFrom(
                    model_pb2.Usage(
                        prompt_tokens=prompt,
                        completion_tokens=i + 1,
                        cached_prompt_tokens=min(self.cached, prompt),
                    )
                )
            yield message

    async def score(
        self, query: str, passages: Sequence[str], max_passage_tokens: int = 0, timeout: float | None = None
    ) -> PassageScores:
        """`score_rule` per passage; the model service's refusals (no passages, over 100)."""
        self.scored.append((query, list(passages), max_passage_tokens, timeout))
        if not passages:
            raise InvalidArgument("passages must not be empty", field="passages")
        if len(passages) > 100:
            raise InvalidArgument("passages: at most 100 passages per call", field="passages")
        if self.score_too_slow:
            raise DeadlineExceeded("the model service did not answer in time")
        tokens = sum(fake_tokens(p) + fake_tokens(query) + 8 for p in passages)
        return PassageScores([self.score_rule(query, p) for p in passages], tokens, 0)

    async def load(self) -> model_pb2.Load:
        return self.reported_load

    async def watch(self) -> AsyncIterator[bool]:
        """Reports SERVING once and keeps the stream open, as a live replica's health Watch does."""
        yield True
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


@dataclass
class FlakyModelClient(FakeModelClient):
    """A fake replica that fails on purpose: every call ends with `refuse` before its first message
    (Unavailable: the replica is gone; Overloaded: it is full), or — with `fail_after_tokens` — with
    Unavailable once that many tokens went out (the replica died mid-answer)."""

    refuse: RagwayError | None = None
    fail_after_tokens: int | None = None

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        if self.refuse is not None:
            self.requests.append(request)
            raise self.refuse
        sent = 0
        async for message in super().generate(request, timeout):
            if self.fail_after_tokens is not None and sent >= self.fail_after_tokens and message.choices:
                raise Unavailable("the fake replica died")
            sent += sum(len(d.token_ids) for d in message.choices)
            yield message


def fake_router(
    settings: GatewaySettings, replicas: dict[str, FakeModelClient], table: ModelTable | None = None
) -> ModelRouter:
    """The real router over `table` (default: one model named by its fake) whose replica addresses
    lead to these fakes instead of model services."""
    return ModelRouter.build(
        table or default_table(next(iter(replicas))),
        replicas.__getitem__,  # type: ignore[arg-type]
        default_price=settings.price,
        info_ttl=settings.model_info_ttl_seconds,
        backoff=settings.replica_backoff_seconds,
        backoff_max=settings.replica_backoff_max_seconds,
        dns_refresh=settings.dns_refresh_seconds,
    )


def _holds(cond: Condition, metadata: dict[str, Any]) -> bool:
    """A condition as retrieval.proto defines it: false for a missing key; booleans are not
    numbers."""
    if cond.key not in metadata:
        return False
    have = metadata[cond.key]

    def same(want: Any) -> bool:
        if isinstance(have, bool) or isinstance(want, bool):
            return have is want
        if isinstance(have, int | float) and isinstance(want, int | float):
            return float(have) == float(want)
        return bool(have == want)

    if cond.any_of is not None:
        return any(same(v) for v in cond.any_of)
    if cond.range is not None:
        if isinstance(have, bool) or not isinstance(have, int | float):
            return False
        r = cond.range
        checks = {
            "gt": "gt" not in r or have > r["gt"],
            "gte": "gte" not in r or have >= r["gte"],
            "lt": "lt" not in r or have < r["lt"],
            "lte": "lte" not in r or have <= r["lte"],
        }
        return all(checks.values())
    return same(cond.equals)


def keeps(where: Filter, metadata: dict[str, Any]) -> bool:
    """Whether the fake store keeps a chunk: the Filter's must / should / must_not, nested."""

    def holds(clause: Condition | Filter) -> bool:
        return keeps(clause, metadata) if isinstance(clause, Filter) else _holds(clause, metadata)

    return (
        all(holds(c) for c in where.must)
        and (not where.should or any(holds(c) for c in where.should))
        and not any(holds(c) for c in where.must_not)
    )


@dataclass
class FakeRetrievalClient:
    """An in-memory store with word-overlap scoring; records every search it ran (and the search
    settings it was sent) and the index parameters of each collection it created. It has no
    reranker unless `reranker` names one (as DescribeService would)."""

    docs: dict[str, dict[str, DocumentUpload]] = field(default_factory=dict)
    searches: list[tuple[str, str]] = field(default_factory=list)
    search_settings: list[SearchSettings] = field(default_factory=list)
    filters: list[Filter | None] = field(default_factory=list)  # the filter of each search
    indexes: dict[str, IndexSettings] = field(default_factory=dict)
    reranker: str = ""
    address: str = "fake:1"

    async def serving(self, timeout: float = 2.0) -> bool:
        return True

    async def create_collection(
        self, collection: str, index: IndexSettings = IndexSettings(), embedder: str = ""
    ) -> None:
        self.docs.setdefault(collection, {})
        self.indexes[collection] = index

    async def describe_service(self, timeout: float | None = None) -> ServiceInfo:
        notes = [] if self.reranker else ["no reranker configured (fake)"]
        # The bundled embedder's name, so requests written for the real service route here too.
        embedder = EmbeddingModel("all-MiniLM-L6-v2", 2, 254)
        rankers = ["auto", "none"] + (["cross-encoder"] if self.reranker else [])
        return ServiceInfo("fake", embedder.name, "", self.reranker, notes, [embedder], rankers)

    async def describe(self, collection: str) -> CollectionStats:
        docs = self.docs.get(collection, {})
        return CollectionStats(
            document_count=len(docs),
            vector_count=len(docs),
            index=self.indexes.get(collection, IndexSettings()),
        )

    async def embedder(self, collection: str) -> str:
        return (await self.describe(collection)).embedder

    async def delete_collection(self, collection: str) -> int:
        return len(self.docs.pop(collection, {}))

    async def upsert(self, collection: str, documents: Sequence[DocumentUpload]) -> dict[str, int]:
        for doc in documents:
            self.docs.setdefault(collection, {})[doc.id] = doc
        return {doc.id: 1 for doc in documents}

    async def delete(self, collection: str, document_ids: Sequence[str]) -> int:
        return sum(self.docs.get(collection, {}).pop(i, None) is not None for i in document_ids)

    async def get_document(self, collection: str, document_id: str) -> StoredDocument:
        doc = self.docs.get(collection, {}).get(document_id)
        if doc is None:
            raise NotFound(f"document {document_id!r} not found")
        return StoredDocument(id=doc.id, metadata=doc.metadata, chunks=[(0, str(doc.content))])

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int,
        where: Filter | None = None,
        min_score: float | None = None,
        settings: SearchSettings = SearchSettings(),
        *,
        label: str = "",
    ) -> list[RetrievedChunk]:
        self.searches.append((collection, query))
        self.search_settings.append(settings)
        self.filters.append(where)
        words = set(query.lower().split())
        hits = []
        for doc in self.docs.get(collection, {}).values():
            if where is not None and not keeps(where, doc.metadata):
                continue
            text = str(doc.content)
            score = len(words & set(text.lower().split())) / max(len(words), 1)
            hits.append(RetrievedChunk(label or collection, doc.id, 0, score, text, dict(doc.metadata)))
        return sorted(hits, key=lambda h: h.score, reverse=True)[:top_k]

    async def embed(self, texts: Sequence[str], model: str = "") -> Embeddings:
        return Embeddings([[1.0, 0.0] for _ in texts], sum(fake_tokens(t) for t in texts), "fake")

    async def close(self) -> None:
        return None
