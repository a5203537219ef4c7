"""/healthz (the process is alive) and /readyz (it can serve: database and model service up)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from ragway.gateway.api.deps import ModelDep, RetrievalDep, SessionDep
from ragway.gateway.api.routing import StrictJsonRoute

router = APIRouter(tags=["health"], route_class=StrictJsonRoute)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: answers while the event loop runs."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(session: SessionDep, model: ModelDep, retrieval: RetrievalDep) -> Any:
    """Readiness: the database answers and the model service is SERVING (retrieval is reported,
    not required: plain chat works without it)."""
    checks: dict[str, bool] = {}
    try:
        await session.execute(text("SELECT 1"))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    checks["model"] = await model.serving()
    checks["retrieval"] = await retrieval.serving()
    ready = checks["database"] and checks["model"]
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
