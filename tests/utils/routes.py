"""The gateway's route table as (method, path) pairs: what the route-table tests (metering,
authorization) classify, so a new route that no table names fails them."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import Route

from ragway.gateway.app import create_app
from ragway.gateway.core.config import GatewaySettings

# FastAPI's own documentation routes: no API behind them.
DOCS_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def app_routes() -> set[tuple[str, str]]:
    """Every method and path the gateway serves, HEAD and the docs left out."""
    found = set()
    for route in create_app(GatewaySettings()).routes:
        if isinstance(route, APIRoute | Route) and route.path not in DOCS_ROUTES:
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found
