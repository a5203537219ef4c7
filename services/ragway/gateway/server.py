"""Run the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from ragway.core.logging import configure_logging
from ragway.gateway.app import create_app
from ragway.gateway.config import get_settings
from ragway.gateway.drain import DrainingServer


def main() -> None:
    settings = get_settings()
    configure_logging("gateway", settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_seconds),
        # uvloop + httptools when installed (uvicorn[standard]).
        loop="auto",
        http="auto",
    )
    DrainingServer(config, app.state.drain, settings.drain_seconds).run()


if __name__ == "__main__":
    main()
