"""/healthz (the process is alive) and /readyz (it can serve: database and model service up;
the retrieval service's search capabilities as details)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from ragway.core.errors import RagwayError
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.core.deps import ModelsDep, RetrievalDep, SessionDep
from ragway.gateway.core.json_route import StrictJsonRoute

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the event loop runs."""
    return {"status": "ok"}


async def retrieval_details(retrieval: RetrievalClient) -> dict[str, Any]:
    """What search can do, from the retrieval service itself: its backend, embedder, sparse
    encoder and cross-encoder reranker, or why one is missing (a reranker is optional)."""
    try:
        info = await retrieval.describe_service(timeout=2.0)
    except RagwayError as exc:
        return {"error": exc.message}
    return {
        "backend": info.backend,
        "embedder": info.embedder,
        "sparse_encoder": info.sparse_encoder or None,
        "reranker": info.reranker or None,
        "rankers": info.rankers,
        "notes": info.notes,
    }


@router.get("/readyz")
async def readyz(session: SessionDep, models: ModelsDep, retrieval: RetrievalDep) -> Any:
    """Readiness: the database answers and some model has a replica that is SERVING (retrieval is
    reported, not required: plain chat works without it). `unavailable_models` names the models
    with no healthy replica: a gateway that can serve one model still takes traffic for it."""
    checks: dict[str, bool] = {}
    try:
        await session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    unavailable = models.unavailable()
    checks["model"] = len(unavailable) < len(models.models)
    checks["retrieval"] = await retrieval.serving()
    ready = checks["database"] and checks["model"]
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": checks,
        "unavailable_models": unavailable,
    }
    if checks["retrieval"]:
        details = await retrieval_details(retrieval)
        body["details"] = {"retrieval": details}
        # The rankers a search may name: the retrieval service's own, and "llm" (the gateway
        # reranks with a served model, rag.rerank; whether one serves now is checks.model).
        body["details"]["rankers"] = [*details.get("rankers", []), "llm"]
    return JSONResponse(body, status_code=200 if ready else 503)
