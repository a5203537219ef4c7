"""The one `ragway` command line: start each service, the whole stack, and manage keys and data."""

from __future__ import annotations

from pathlib import Path

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


@app.command()
def up(
    data_dir: Path = typer.Option(Path(".ragway"), envvar="RAGWAY_DATA_DIR", help="Where all state lives."),
) -> None:
    """Start model, retrieval and gateway on the embedded defaults; Ctrl-C stops them."""
    from ragway.stack import up as run_stack

    raise typer.Exit(run_stack(data_dir))


keys_app = typer.Typer(no_args_is_help=True, help="API keys, straight in the database.")
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    admin: bool = typer.Option(False, "--admin", help="A key of the admin user."),
    user: str = typer.Option("", help="Name of the (new or existing) user; default: admin."),
    credits: float = typer.Option(0.0, help="Starting credits of a new user."),
) -> None:
    """Mint a key and print it once (uses RAGWAY_DATABASE_URL / RAGWAY_DATA_DIR)."""
    import asyncio

    from ragway.gateway.accounts import bootstrap_key

    typer.echo(asyncio.run(bootstrap_key(user or "admin", "admin" if admin or not user else "user", credits)))


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders (.txt .md .html .pdf)."),
    collection: str = typer.Option(..., "--collection", "-c", help="Target collection (created if missing)."),
    url: str = typer.Option("http://127.0.0.1:8000", envvar="RAGWAY_URL", help="Gateway URL."),
    api_key: str = typer.Option("", envvar="RAGWAY_API_KEY", help="API key; default: the stack's admin key."),
    data_dir: Path = typer.Option(Path(".ragway"), envvar="RAGWAY_DATA_DIR"),
) -> None:
    """Upload documents to a collection; unchanged files are skipped, changed ones replaced."""
    from ragway.ingest import ingest as run_ingest

    key = api_key or (data_dir / "admin.key").read_text().strip()
    report = run_ingest(url, key, collection, paths)
    typer.echo(
        f"{report.files} files: {report.written} written ({report.chunks} chunks), "
        f"{report.unchanged} unchanged, {len(report.failed)} failed"
    )
    for path, reason in report.failed.items():
        typer.echo(f"  {path}: {reason}", err=True)
    raise typer.Exit(1 if report.failed else 0)


if __name__ == "__main__":
    app()
