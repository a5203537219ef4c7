"""Run the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from ragway.core.logging import configure_logging
from ragway.gateway.app import create_app
from ragway.gateway.config import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_seconds),
        # uvloop + httptools when installed (uvicorn[standard]).
        loop="auto",
        http="auto",
    )


if __name__ == "__main__":
    main()
