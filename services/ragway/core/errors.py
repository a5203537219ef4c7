"""The domain errors every service raises, and their gRPC status.

Services raise these; one gRPC interceptor (core.grpc_server) turns them into a status, and the
gateway maps the same classes (and gRPC statuses coming back) to HTTP in one table. Anything
else is a bug: INTERNAL / 500, logged with its traceback.
"""

from __future__ import annotations

import grpc


class RagwayError(Exception):
    """Base class: an error a caller can act on."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(RagwayError):
    """The request is malformed; `field` names the offending parameter."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RagwayError):
    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RagwayError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class ResourceExhausted(RagwayError):
    """Too much load or too little quota; retry later."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, *, retry_after: float | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Unavailable(RagwayError):
    """A dependency (engine, store, service) cannot serve right now."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(RagwayError):
    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED


class FailedPrecondition(RagwayError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
