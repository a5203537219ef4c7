"""The Responses API's file_search tool: the gateway searches the caller's vector stores before
the model runs and grounds the answer in what it found.

OpenAI's model decides to call file_search and writes its queries; ragway's served model is far
too small for that, so a request with the tool always searches (unless tool_choice is "none"),
with the conversation's newest question (and the one before it, for a follow-up) as the query —
as the chat API's `rag` option does, with the same grounding. The search is the vector-store
search route's own (`rag.vector_stores.find_chunks`): the same access rules, filters, ranking and
embedding billing. It runs before the response starts, so a store the caller cannot see is a 404
and a bad filter a 400; the streamed file_search_call events report a search that already ran.

The answer cites its sources with [n] markers (`rag.grounding`, which also names each source by
its filename); each marker, and each mention of a source's filename, becomes a file_citation
annotation at its offset in the text, naming the cited source's file. The served
135M model answers from its sources but seldom writes the markers, so an answer without any cites
the sources it quotes instead: a sentence that repeats QUOTE_WORDS consecutive words of a source
gets an annotation at its end. Every result is kept with the response (shown only when included),
so a stored response is annotated exactly as it was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import NotFound, RagwayError
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.generation.grounding import Sources, citation_marks
from ragway.gateway.generation.service import ChatPlan, GenerationService
from ragway.gateway.rag.protocol import HybridOptions
from ragway.gateway.rag.query import follow_up_query
from ragway.gateway.responses.input_files import without_files
from ragway.gateway.responses.protocol import (
    FILE_SEARCH_RESULTS,
    CreateResponseRequest,
    FileSearchCall,
    FileSearchResult,
    FileSearchTool,
    ToolParam,
)
from ragway.gateway.vector_stores import serving as vs
from ragway.gateway.vector_stores.protocol import SearchResult

# Consecutive words an answer's sentence must share with a source to cite it without a marker.
QUOTE_WORDS = 5
WORD = re.compile(r"\w+")
SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


def call_item_id(response_id: str) -> str:
    return f"fs_{response_id.removeprefix('resp_')}"


def reported(tool: ToolParam) -> FileSearchTool:
    """The tool as the response object shows it, defaults filled in: ranking_options always has
    its ranker and score_threshold (0: no cut), and hybrid_search when the request set it."""
    ranking = tool.ranking_options
    shown: dict[str, Any] = {
        "ranker": ranking.ranker if ranking else "auto",
        "score_threshold": (ranking.score_threshold or 0.0) if ranking else 0.0,
    }
    if ranking is not None and ranking.hybrid_search is not None:
        shown["hybrid_search"] = ranking.hybrid_search.model_dump()
    return FileSearchTool(
        vector_store_ids=tool.vector_store_ids or [],
        max_num_results=tool.max_num_results or FILE_SEARCH_RESULTS,
        filters=tool.filters,
        ranking_options=shown,
    )


def search_options(tool: ToolParam, query: str) -> vs.SearchOptions:
    """The vector store search the tool asks for. OpenAI's hybrid_search weights are ragway's
    hybrid search weights under other names: embedding_weight weighs the dense list and
    text_weight the sparse (BM25) one in the reciprocal rank fusion."""
    ranking = tool.ranking_options
    weights = ranking.hybrid_search if ranking is not None else None
    return vs.SearchOptions(
        query=query,
        filters=tool.filters,
        max_num_results=tool.max_num_results or FILE_SEARCH_RESULTS,
        ranker=ranking.ranker if ranking else "auto",
        score_threshold=ranking.score_threshold if ranking else None,
        mode="hybrid" if weights is not None else None,
        hybrid=HybridOptions(
            fusion="rrf", dense_weight=weights.embedding_weight, sparse_weight=weights.text_weight
        )
        if weights is not None
        else None,
    )


def _renamed(exc: RagwayError, index: int) -> RagwayError:
    """A search error with the parameter named as this API names it (`tools.0.filters`); the
    hybrid fusion's are OpenAI's ranking_options.hybrid_search."""
    if exc.field == "query":
        exc.field = "input"
    elif exc.field in ("hybrid", "mode"):
        exc.field = f"tools.{index}.ranking_options.hybrid_search"
    elif exc.field is not None:
        exc.field = f"tools.{index}.{exc.field}"
    elif isinstance(exc, NotFound):
        exc.field = f"tools.{index}.vector_store_ids"
    return exc


async def ground(
    service: GenerationService,
    session: AsyncSession,
    retrieval: RetrievalClient,
    principal: Principal,
    req: CreateResponseRequest,
    plan: ChatPlan,
) -> Sources:
    """Run the request's file_search tool for the plan's newest question; the sources to ground
    the answer in. The call (its queries, and its results when the request includes them) is kept
    with the response's own fields, `plan.response["file_search"]`, for its output item."""
    tool = req.file_search
    assert tool is not None and req.tools is not None and plan.response is not None
    earlier = await service.history(principal, plan.conversation_id) if plan.conversation_id else []
    # The question is the user's own words: a document sent with it (input_file) is not a query.
    asked = [without_files(t.content) for _, t in earlier if t.role == "user"] + [
        without_files(t.content) for t in plan.turns if t.role == "user"
    ]
    options = search_options(tool, follow_up_query(asked))
    try:
        queries, chunks = await vs.find_chunks(
            session,
            retrieval,
            principal,
            tool.vector_store_ids or [],
            options,
            settings=service.settings,
            limiter=service.limiter,
        )
    except RagwayError as exc:
        raise _renamed(exc, req.tools.index(tool)) from None
    plan.response["file_search"] = {
        "queries": queries,
        "results": [_result(vs.search_result(c), c.collection) for c in chunks],
        "include_results": "file_search_call.results" in (req.include or []),
    }
    return Sources(tuple(chunks))


def _result(hit: SearchResult, vector_store_id: str) -> dict[str, Any]:
    """A result as the call reports it; `vector_store_id` is the chunk's label (the store's id,
    as `vs.find_chunks` searches)."""
    text = "".join(part.text for part in hit.content)
    return FileSearchResult(
        file_id=hit.file_id,
        filename=hit.filename,
        score=hit.score,
        attributes=hit.attributes,
        text=text,
        vector_store_id=vector_store_id,
    ).model_dump()


def call_item(response_id: str, call: dict[str, Any], status: str = "completed") -> FileSearchCall:
    """The file_search_call output item of a response; `call` as `search` returned it."""
    return FileSearchCall(
        id=call_item_id(response_id),
        status=status,  # type: ignore[arg-type]
        queries=call["queries"],
        results=call["results"] if call["include_results"] else None,
    )


def _runs(text: str) -> set[tuple[str, ...]]:
    words = [w.lower() for w in WORD.findall(text)]
    return {tuple(words[i : i + QUOTE_WORDS]) for i in range(len(words) - QUOTE_WORDS + 1)}


def _mentions(text: str, filename: str) -> list[int]:
    """Where the answer names the file: the offset just past each whole-name mention."""
    if len(filename) < 3:
        return []
    name = re.compile(rf"(?<![\w.-]){re.escape(filename)}(?![\w-])", re.IGNORECASE)
    return [m.end() for m in name.finditer(text)]


def file_citations(text: str, sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_citation annotations for the answer `text`, in text order; `sources` are the results
    the model was given, source [n] first. Each [n] marker cites source n at the marker's offset,
    and each mention of a source's filename cites it just past the name; an answer with neither
    cites the sources its sentences quote, at each sentence's end. An answer that refers to no
    source gets no annotation."""
    marks = [
        (offset, number)
        for offset, numbers in citation_marks(text)
        for number in numbers
        if 1 <= number <= len(sources)
    ]
    marks.extend(
        (offset, number)
        for number, source in enumerate(sources, start=1)
        for offset in _mentions(text, source["filename"])
    )
    if not marks:
        quoted = [_runs(source["text"]) for source in sources]
        for sentence in SENTENCE.finditer(text):
            runs = _runs(sentence[0])
            end = sentence.start() + len(sentence[0].rstrip())
            marks.extend((end, n) for n, source_runs in enumerate(quoted, start=1) if runs & source_runs)
    found: list[dict[str, Any]] = []
    for offset, number in sorted(marks):
        source = sources[number - 1]
        annotation = {
            "type": "file_citation",
            "file_id": source["file_id"],
            "filename": source["filename"],
            "index": offset,
        }
        if annotation not in found:
            found.append(annotation)
    return found
