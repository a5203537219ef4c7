"""The gateway application: lifespan (database, gRPC clients, limiter), errors, routes, frontend."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragway import __version__
from ragway.core.errors import RagwayError
from ragway.core.tracing import TracingMiddleware, grpc_client_interceptors
from ragway.gateway.accounts import api_router as accounts
from ragway.gateway.accounts import billing
from ragway.gateway.accounts.auth import KEY_PREFIX, ensure_admin_key
from ragway.gateway.accounts.limiter import create_limiter
from ragway.gateway.admin import api_router as admin
from ragway.gateway.catalog import api_router as catalog
from ragway.gateway.catalog.model_router import ModelRouter
from ragway.gateway.chat_completion import api_router as chat_completion
from ragway.gateway.clients.model import ModelReplica
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.collections import api_router as collections
from ragway.gateway.completion import api_router as completion
from ragway.gateway.completion.protocol import UNSUPPORTED
from ragway.gateway.conversations import api_router as conversations
from ragway.gateway.core import db, metrics
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.drain import Drain, DrainMiddleware
from ragway.gateway.core.errors import database_unavailable, error_body, error_response, http_error
from ragway.gateway.core.middleware import GatewayMiddleware
from ragway.gateway.core.tables import MICRO
from ragway.gateway.embeddings import api_router as embeddings
from ragway.gateway.files import api_router as files
from ragway.gateway.files.storage import create_file_storage
from ragway.gateway.generation.service import GenerationService
from ragway.gateway.health import api_router as health
from ragway.gateway.rerank import api_router as rerank
from ragway.gateway.responses import api_router as responses
from ragway.gateway.tokenize import api_router as tokenize
from ragway.gateway.vector_stores import api_router as vector_stores
from ragway.gateway.vector_stores.ingestion import IngestionWorker

log = logging.getLogger(__name__)

REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"
ADMIN_KEY_FILE = "admin.key"
ORPHAN_SWEEP_SECONDS = 60.0


def admin_key(settings: GatewaySettings) -> str:
    """RAGWAY_ADMIN_KEY, or a key generated on first start and kept in the data folder."""
    if settings.admin_key is not None:
        return settings.admin_key.get_secret_value()
    path = settings.data_dir / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


async def bootstrap(settings: GatewaySettings) -> None:
    """The schema at its newest revision and a working admin key; idempotent. A gateway with
    several workers runs it once before starting them, so they never race to migrate or to make
    the admin (each worker's own start then finds both in place)."""
    url = settings.sqlalchemy_url()
    await asyncio.to_thread(db.migrate, url)
    engine = db.create_engine(url)
    try:
        async with db.session_factory(engine)() as session:
            try:
                await ensure_admin_key(session, admin_key(settings), round(settings.admin_credits * MICRO))
            except IntegrityError:
                # Another gateway replica starting at the same moment made the admin first: use it.
                await session.rollback()
                await ensure_admin_key(session, admin_key(settings), round(settings.admin_credits * MICRO))
    finally:
        await engine.dispose()


async def release_orphans_forever(sessions: async_sessionmaker[AsyncSession], older_than: float) -> None:
    """Every minute, settle the reservations whose request died with its gateway (`accounts/billing.py`)."""
    while True:
        await asyncio.sleep(ORPHAN_SWEEP_SECONDS)
        try:
            async with sessions() as session:
                await billing.release_orphans(session, older_than)
        except Exception:
            log.exception("settling orphaned reservations failed; trying again in a minute")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: GatewaySettings = app.state.settings
    await bootstrap(settings)
    engine = db.create_engine(settings.sqlalchemy_url())
    app.state.sessions = db.session_factory(engine)
    app.state.models = ModelRouter.build(
        settings.model_table(),
        lambda address: ModelReplica(address, settings.rpc_timeout_seconds, grpc_client_interceptors()),
        default_price=settings.price,
        info_ttl=settings.model_info_ttl_seconds,
        backoff=settings.replica_backoff_seconds,
        backoff_max=settings.replica_backoff_max_seconds,
        dns_refresh=settings.dns_refresh_seconds,
    )
    app.state.models.start()
    app.state.retrieval = RetrievalClient(
        settings.retrieval_service_addr,
        settings.rpc_timeout_seconds,
        write_timeout=settings.retrieval_write_timeout_seconds,
        embed_timeout=settings.embed_timeout_seconds,
        interceptors=grpc_client_interceptors(),
    )
    app.state.limiter = create_limiter(settings.redis_url.get_secret_value() if settings.redis_url else None)
    app.state.generation = GenerationService(
        settings, app.state.sessions, app.state.models, app.state.limiter
    )
    app.state.files = create_file_storage(
        settings.file_store, settings.sqlalchemy_url(), settings.file_storage_dir()
    )
    # Vector store ingestion runs here, from the in_progress rows in SQL (so a restart resumes it).
    app.state.ingestion = IngestionWorker(
        settings, app.state.sessions, app.state.retrieval, app.state.files, app.state.limiter
    )
    app.state.ingestion.start()
    orphans = asyncio.create_task(release_orphans_forever(app.state.sessions, settings.orphan_after()))
    try:
        yield
    finally:
        orphans.cancel()
        await asyncio.gather(orphans, return_exceptions=True)
        await app.state.ingestion.stop()
        # Streams still settling their bill must finish before the database goes away.
        pending = app.state.generation.pending
        if pending:
            await asyncio.wait(pending, timeout=settings.drain_seconds)
        await app.state.models.close()
        await app.state.retrieval.close()
        await app.state.limiter.close()
        await engine.dispose()


def _domain_error(request: Request, exc: RagwayError) -> JSONResponse:
    response = error_response(exc)
    if response.status_code in (429, 503):
        metrics.REJECTIONS.labels(http_error(exc).code or "unavailable").inc()
    return response


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    # The first element says where (body, query string, ...); a body field may itself be "query".
    where = list(first.get("loc", ()))
    loc = [
        str(p) for p in (where[1:] if where and where[0] in ("body", "query", "path", "header") else where)
    ]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg"))
    if first.get("type") == "extra_forbidden" and param:
        # Never accepted and ignored: name the parameter, and say why when it is a known one.
        reason = UNSUPPORTED.get(loc[-1], "ragway does not know this parameter")
        message = f"unsupported parameter {param!r}: {reason}"
    return JSONResponse(error_body(message, "invalid_request_error", "invalid_value", param), status_code=400)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(
        error_body(str(exc.detail), type_, code),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # PostgreSQL restarting or failing over is a 503 with Retry-After (errors.DatabaseUnavailable),
    # wherever the query ran; every other unexpected error is a 500 with its traceback logged.
    unavailable = database_unavailable(exc)
    if unavailable is not None:
        cause = getattr(exc, "orig", None) or exc
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, cause)
        return _domain_error(request, unavailable)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal error; see the gateway log", "server_error", "internal_error"), status_code=500
    )


def create_app(settings: GatewaySettings) -> FastAPI:
    app = FastAPI(
        title="ragway",
        version=__version__,
        description="OpenAI-compatible LLM gateway with auth, billing, history and RAG.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(RagwayError, _domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    app.add_exception_handler(SQLAlchemyError, _unexpected)  # a DB outage: see _unexpected
    for module in (
        chat_completion,
        completion,
        responses,
        tokenize,
        catalog,
        embeddings,
        rerank,
        conversations,
        collections,
        files,
        vector_stores,
        accounts,
        admin,
        health,
    ):
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["*"],
        allow_headers=["*"],
        expose_headers=["X-Conversation-Id", "X-Request-Id", "Retry-After"],
    )
    app.add_middleware(TracingMiddleware)
    app.state.drain = Drain()  # set draining by the server on SIGTERM (`core/drain.py`)
    app.add_middleware(DrainMiddleware, drain=app.state.drain)
    app.add_middleware(
        GatewayMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        max_file_bytes=settings.max_file_bytes,
    )
    frontend = settings.frontend_dir or REPO_FRONTEND
    if frontend.is_dir():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    return app
