"""The one `ragway` command line: start each service, the whole stack, and manage keys and data."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ragway: LLM serving with RAG.")
model_app = typer.Typer(no_args_is_help=False, invoke_without_command=True, help="The vLLM model service.")
app.add_typer(model_app, name="model")


@model_app.callback()
def model(ctx: typer.Context) -> None:
    """Run the gRPC model service (settings: RAGWAY_MODEL_*)."""
    if ctx.invoked_subcommand is None:
        from ragway.model.server import main

        main()


@model_app.command("prepare")
def model_prepare() -> None:
    """Convert the bundled default model into RAGWAY_MODEL_CACHE once (idempotent)."""
    from ragway.model.config import get_settings
    from ragway.model.weights import resolve_model

    path = resolve_model(get_settings())
    typer.echo(f"model ready: {path}")


@app.command()
def retrieval() -> None:
    """Run the gRPC retrieval service (settings: RAGWAY_RETRIEVAL_*)."""
    from ragway.retrieval.server import main

    main()


@app.command()
def gateway() -> None:
    """Run the HTTP gateway (settings: RAGWAY_*)."""
    from ragway.gateway.server import main

    main()


if __name__ == "__main__":
    app()
