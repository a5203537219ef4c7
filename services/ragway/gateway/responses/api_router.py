"""POST /v1/responses, GET/DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from ragway.core.errors import RagwayError
from ragway.gateway.chat_completion.serving import SSE_HEADERS, STREAMED
from ragway.gateway.core.deps import CurrentPrincipal, FileStorageDep, GenerationDep, RetrievalDep, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute
from ragway.gateway.responses import file_search, input_files, serving, store
from ragway.gateway.responses.protocol import CreateResponseRequest, InputItemList, Response, ResponseDeleted

router = APIRouter(prefix="/v1/responses", tags=["openai"], route_class=StrictJsonRoute)


@router.post("", response_model=Response, responses=STREAMED)  # type: ignore[arg-type]
async def create_response(
    body: CreateResponseRequest,
    principal: CurrentPrincipal,
    service: GenerationDep,
    session: SessionDep,
    retrieval: RetrievalDep,
    storage: FileStorageDep,
) -> Any:
    """OpenAI's Responses API; `previous_response_id` and `conversation` continue the stored
    history; a file_search tool grounds the answer in the caller's vector stores; input_file parts
    bring documents' text into their messages."""
    route = await service.check(principal, body.model)
    documents = await input_files.read(session, storage, principal, body)
    conversation_id, branched, until = body.conversation_id, False, None
    if body.previous_response_id:
        continued = await store.continue_from(
            session, principal.user_id, body.previous_response_id, stored=body.store
        )
        conversation_id, branched, until = continued.conversation_id, continued.branched, continued.until
    response_id = serving.new_response_id()
    try:
        plan = serving.plan_response(
            body, response_id, conversation_id, history_until=until, documents=documents
        )
        sources = None
        if body.file_search is not None:
            sources = await file_search.ground(service, session, retrieval, principal, body, plan)
        gen = await service.prepare(principal, plan, route, sources)
    except RagwayError as exc:
        if branched and conversation_id:
            await store.drop_conversation(session, principal.user_id, conversation_id)
        raise serving.renamed(exc) from None
    headers = {"X-Conversation-Id": gen.conversation_id} if gen.conversation_id else {}
    if body.stream:
        events = serving.stream(service, gen)
        # A refusal raises in the first step, before the response starts (see chat._respond).
        try:
            if await anext(events) != serving.ADMITTED:
                raise AssertionError("stream() yields ADMITTED first")
        except RagwayError as exc:
            raise serving.renamed(exc) from None
        return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
    try:
        progress = await service.run_to_end(gen)
    except RagwayError as exc:
        raise serving.renamed(exc) from None
    return JSONResponse(serving.body(gen, progress).model_dump(mode="json"), headers=headers)


@router.get("/{response_id}", response_model=Response)
async def get_response(response_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """A stored response, rebuilt from the conversation history."""
    return serving.stored(await store.get_exchange(session, principal.user_id, response_id))


@router.delete("/{response_id}", response_model=ResponseDeleted)
async def delete_response(
    response_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ResponseDeleted:
    """Delete a stored response: its turns leave their conversation."""
    await store.delete_exchange(session, principal.user_id, response_id)
    return ResponseDeleted(id=response_id)


@router.get("/{response_id}/input_items", response_model=InputItemList)
async def list_input_items(
    response_id: str,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, max_length=256),
) -> InputItemList:
    """The input items a stored response was created with (newest first unless order=asc)."""
    items = serving.input_items(await store.get_exchange(session, principal.user_id, response_id))
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [i.id for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return InputItemList(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=len(items) > limit,
    )
