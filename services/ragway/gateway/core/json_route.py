"""The route class every gateway router uses: a JSON body must be valid Unicode text.

JSON may spell an unpaired UTF-16 surrogate as an escape (`"\\ud800"`); Python's json module
accepts it and returns a str that no UTF-8 encoder takes, so the request would fail deep inside a
protobuf or database call as a 500. It is refused here, where the body is parsed, as a 400.
(Routes that parse their own body with pydantic, like document uploads, already refuse it.)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            value = json.loads(await self.body())
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                # fastapi's HTTPException: the body parser passes it on with its message.
                raise HTTPException(
                    400, "the JSON body holds an unpaired surrogate escape (\\ud800-\\udfff); send valid text"
                ) from exc
            self._json = value
        return self._json


class StrictJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
