"""The one `ragway` command line: start each service, the whole stack, and manage keys and data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from pydantic_settings import BaseSettings


def _settings_classes(cls: type[BaseSettings] = BaseSettings) -> list[type[BaseSettings]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_settings_classes(sub))]


def settings_error_lines(exc: ValidationError) -> list[str]:
    """One line per bad setting, named as the environment variable a person sets."""
    prefix = next(
        (str(c.model_config.get("env_prefix", "")) for c in _settings_classes() if c.__name__ == exc.title),
        "",
    )
    lines = []
    for error in exc.errors():
        name = (prefix + "__".join(str(part) for part in error["loc"])).upper() or exc.title
        lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
    return lines


class _Cli(typer.Typer):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A bad setting is the user's to fix: one line that names it and the rule, not a traceback.
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            if not any(exc.title == c.__name__ for c in _settings_classes()):
                raise
            for line in settings_error_lines(exc):
                print(f"ragway: bad setting {line}", file=sys.stderr)
            raise SystemExit(2) from None


app = _Cli(no_args_is_help=True, add_completion=False, help="ragway: LLM serving with RAG.")
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
    """Convert the bundled default model into RAGWAY_MODEL_CACHE once and decide its dtype (both
    idempotent: the dtype probe runs again only when the CPU, the model or vLLM changed)."""
    from ragway.core.logging import configure_logging
    from ragway.model.config import get_settings
    from ragway.model.dtype import choose_dtype, device
    from ragway.model.weights import resolve_model

    settings = get_settings()
    configure_logging("model", settings.log_level)
    path = resolve_model(settings)
    choice = choose_dtype(settings.dtype, device(), Path(path), settings.cache, settings.enforce_eager)
    typer.echo(f"model ready: {path}\ndtype: {choice.dtype} ({choice.source}): {choice.reason}")


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
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Stream every log line; by default they go to <data-dir>/logs/."
    ),
) -> None:
    """Start model, retrieval and gateway on the embedded defaults; Ctrl-C stops them."""
    from ragway.stack import up as run_stack

    raise typer.Exit(run_stack(data_dir, verbose=verbose))


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

    from ragway.gateway.accounts.users import bootstrap_key

    typer.echo(asyncio.run(bootstrap_key(user or "admin", "admin" if admin or not user else "user", credits)))


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or folders (.txt .md .html .pdf)."),
    collection: str = typer.Option(..., "--collection", "-c", help="Target collection (created if missing)."),
    url: str = typer.Option("http://127.0.0.1:8000", envvar="RAGWAY_URL", help="Gateway URL."),
    api_key: str = typer.Option(
        "",
        "--api-key",
        "--key",
        envvar="RAGWAY_API_KEY",
        help="The key of the user whose collection receives the documents.",
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Delete documents from these folders whose files are gone."
    ),
) -> None:
    """Upload documents to a collection (ids: paths relative to the folder given); unchanged files
    are not sent, changed ones replaced."""
    from ragway.ingest import ingest as run_ingest

    if not api_key:
        # Collections belong to the key's user: falling back to the stack's admin key would fill
        # the admin's collection, not the caller's, and say nothing.
        typer.echo(
            "ragway ingest: no API key: pass --api-key KEY or set RAGWAY_API_KEY to the key of the "
            "user whose collection should receive the documents",
            err=True,
        )
        raise typer.Exit(2)
    report = run_ingest(url, api_key, collection, paths, prune=prune)
    typer.echo(
        f"{report.files} files: {report.written} written ({report.chunks} chunks), "
        f"{report.unchanged} unchanged, {len(report.failed)} failed"
        + (f", {report.pruned} pruned" if prune else "")
    )
    for path, reason in report.failed.items():
        typer.echo(f"  {path}: {reason}", err=True)
    raise typer.Exit(1 if report.failed else 0)


if __name__ == "__main__":
    app()
