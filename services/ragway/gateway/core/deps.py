"""FastAPI dependencies: the long-lived objects built in the lifespan, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from ragway.gateway.accounts.auth import Principal, authenticate
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.catalog.model_router import ModelRouter
from ragway.gateway.clients.retrieval import RetrievalClient
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.core.errors import PermissionDenied, Unauthenticated
from ragway.gateway.files.storage import FileStorage
from ragway.gateway.generation.service import GenerationService
from ragway.gateway.vector_stores.ingestion import IngestionWorker


def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


def get_models(request: Request) -> ModelRouter:
    return request.app.state.models  # type: ignore[no-any-return]


def get_retrieval_client(request: Request) -> RetrievalClient:
    return request.app.state.retrieval  # type: ignore[no-any-return]


def get_generation(request: Request) -> GenerationService:
    return request.app.state.generation  # type: ignore[no-any-return]


def get_limiter(request: Request) -> Limiter:
    return request.app.state.limiter  # type: ignore[no-any-return]


def get_file_storage(request: Request) -> FileStorage:
    return request.app.state.files  # type: ignore[no-any-return]


def get_ingestion(request: Request) -> IngestionWorker:
    return request.app.state.ingestion  # type: ignore[no-any-return]


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ModelsDep = Annotated[ModelRouter, Depends(get_models)]
RetrievalDep = Annotated[RetrievalClient, Depends(get_retrieval_client)]
GenerationDep = Annotated[GenerationService, Depends(get_generation)]
LimiterDep = Annotated[Limiter, Depends(get_limiter)]
FileStorageDep = Annotated[FileStorage, Depends(get_file_storage)]
IngestionDep = Annotated[IngestionWorker, Depends(get_ingestion)]


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    async with request.app.state.sessions() as session:
        return await authenticate(session, key.strip())


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied("this route needs an admin key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(get_admin)]
