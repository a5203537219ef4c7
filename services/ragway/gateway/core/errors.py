"""Gateway errors and the one table that turns every error into OpenAI's JSON shape and status.

Domain errors come from ragway.core.errors (raised here or translated from a gRPC status by
`clients.base.translate`); the few that only HTTP knows are defined below. The SDK picks its exception class
from the status, so the status is part of the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse

from ragway.core import errors as core


class Unauthenticated(core.RagwayError):
    pass


class PermissionDenied(core.RagwayError):
    pass


class RateLimited(core.ResourceExhausted):
    """A key's RPM/TPM limit."""


class QuotaExceeded(core.ResourceExhausted):
    """Not enough credits, or the key's budget for this period is spent."""


class StorageQuotaExceeded(core.ResourceExhausted):
    """A user's stored files would pass their byte quota."""


class Overloaded(core.ResourceExhausted):
    """The model service refused admission; another replica or a moment later will do."""


class ModelNotFound(core.NotFound):
    pass


class PayloadTooLarge(core.RagwayError):
    pass


class UnsupportedMediaType(core.RagwayError):
    pass


class UpstreamError(core.RagwayError):
    """A service behind the gateway failed in a way the caller cannot fix."""


class DatabaseUnavailable(core.Unavailable):
    """The gateway's database cannot be reached (restarting, failing over): retry in a moment."""

    retry_after = 2.0


class LimiterUnavailable(core.Unavailable):
    """The rate limiter's Redis cannot be reached: limited keys are refused (fail closed) until
    it is back; retry in a moment."""

    retry_after = 2.0


def database_unavailable(exc: Exception) -> DatabaseUnavailable | None:
    """The domain error for a SQLAlchemy error that means "the database is not reachable now";
    None for every other error (a constraint or SQL error is a bug and stays a 500)."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    unreachable = isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
    return DatabaseUnavailable("the database is unavailable; retry shortly") if unreachable else None


@dataclass(frozen=True)
class HttpError:
    status: int
    type: str
    code: str | None


# Most specific class first: the first isinstance match wins.
ERROR_TABLE: list[tuple[type[core.RagwayError], HttpError]] = [
    (Unauthenticated, HttpError(401, "authentication_error", "invalid_api_key")),
    (PermissionDenied, HttpError(403, "permission_error", "permission_denied")),
    (RateLimited, HttpError(429, "rate_limit_error", "rate_limit_exceeded")),
    (QuotaExceeded, HttpError(429, "insufficient_quota", "insufficient_quota")),
    (StorageQuotaExceeded, HttpError(429, "insufficient_quota", "storage_quota_exceeded")),
    (Overloaded, HttpError(503, "server_error", "overloaded")),
    (core.ResourceExhausted, HttpError(429, "rate_limit_error", "rate_limit_exceeded")),
    (PayloadTooLarge, HttpError(413, "invalid_request_error", "payload_too_large")),
    (UnsupportedMediaType, HttpError(415, "invalid_request_error", "unsupported_media_type")),
    (core.InvalidArgument, HttpError(400, "invalid_request_error", "invalid_value")),
    (ModelNotFound, HttpError(404, "invalid_request_error", "model_not_found")),
    (core.NotFound, HttpError(404, "invalid_request_error", "not_found")),
    (core.AlreadyExists, HttpError(409, "invalid_request_error", "already_exists")),
    (core.FailedPrecondition, HttpError(409, "invalid_request_error", "failed_precondition")),
    (DatabaseUnavailable, HttpError(503, "server_error", "database_unavailable")),
    (core.Unavailable, HttpError(503, "server_error", "service_unavailable")),
    (core.DeadlineExceeded, HttpError(504, "server_error", "timeout")),
    (UpstreamError, HttpError(502, "server_error", "upstream_error")),
]
INTERNAL = HttpError(500, "server_error", "internal_error")


def http_error(exc: core.RagwayError) -> HttpError:
    for cls, mapped in ERROR_TABLE:
        if isinstance(exc, cls):
            return mapped
    return INTERNAL


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def error_payload(exc: core.RagwayError) -> tuple[HttpError, dict[str, object]]:
    mapped = http_error(exc)
    return mapped, error_body(exc.message, mapped.type, mapped.code, exc.field)


def error_response(exc: core.RagwayError) -> JSONResponse:
    mapped, body = error_payload(exc)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    if mapped.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=mapped.status, headers=headers)
