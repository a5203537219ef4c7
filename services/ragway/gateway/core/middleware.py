"""One ASGI middleware for what every request needs: a request id, a body-size limit, metrics.

Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched and a too-large
body is refused from its Content-Length — or as soon as it has sent too much — before it is read.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragway.core.logging import REQUEST_ID_HEADER, request_id_var
from ragway.gateway.core import metrics
from ragway.gateway.core.errors import error_body

# Multipart boundaries and the `purpose` field around one uploaded file.
FORM_OVERHEAD_BYTES = 65_536


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", "unmatched")


class GatewayMiddleware:
    def __init__(
        self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int, max_file_bytes: int | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.max_upload = max_upload_bytes
        self.max_file = max_upload_bytes if max_file_bytes is None else max_file_bytes

    def _limit(self, scope: Scope) -> int:
        # Document and file uploads are the places a large body is expected; a file upload is one
        # file plus a few form fields.
        if scope["path"] == "/v1/files":
            return self.max_file + FORM_OVERHEAD_BYTES
        return self.max_upload if scope["path"].endswith("/documents") else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1")[:64] or uuid.uuid4().hex
        request_id_var.set(request_id)
        limit = self._limit(scope)
        started = time.perf_counter()
        status = 500

        refused = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if refused:
                return  # the 413 is out; whatever the app answers after it is dropped
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send_wrapper, limit)
            self._observe(scope, status, started)
            return
        received = 0

        async def receive_limited() -> Message:
            # Answer 413 the moment the body passes the limit, then tell the app the client left.
            # (Raising here instead would not work: the body parser turns any exception of
            # a receive into a 400 "error parsing the body".)
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await self._refuse(send_wrapper, limit)
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, receive_limited, send_wrapper)
        except Exception:
            if not refused:
                raise
            # The app failed on the body it never got whole; the client already has its 413.
        finally:
            self._observe(scope, status, started)

    async def _refuse(self, send: Any, limit: int) -> None:
        body = json.dumps(
            error_body(
                f"request body too large; the limit is {limit} bytes",
                "invalid_request_error",
                "payload_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = _route_label(scope)
        metrics.REQUESTS.labels(route, scope["method"], str(status)).inc()
        metrics.LATENCY.labels(route).observe(time.perf_counter() - started)
