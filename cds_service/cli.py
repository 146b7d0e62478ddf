"""The `cds-service` command: serve, and the knowledge tools."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask.cli import FlaskGroup

from . import create_app
from .settings import Settings


def _app_factory() -> object:
    return create_app()


@click.group(
    cls=FlaskGroup,
    create_app=_app_factory,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
)
def main() -> None:
    """Back-spasm CDS Hooks service."""


def _fail(message: str) -> None:
    click.echo(f"cds-service: {message}", err=True)
    sys.exit(2)


@main.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes."
)
@click.option(
    "--allow-unauthenticated",
    is_flag=True,
    help="Development mode: accept calls without a JWT. Never in production.",
)
def serve(host: str, port: int, workers: int, allow_unauthenticated: bool) -> None:
    """Run the service on gunicorn, the production WSGI server."""
    from .server import ServeError, run_server

    settings = Settings()
    if allow_unauthenticated:
        settings = settings.model_copy(update={"allow_unauthenticated": True})
    try:
        run_server(settings, host=host, port=port, workers=workers)
    except ServeError as exc:
        _fail(str(exc))


@main.group("knowledge")
def knowledge() -> None:
    """Check and maintain the clinical knowledge."""


def _knowledge_dir(directory: str | None) -> Path:
    return Path(directory) if directory else Settings().knowledge_dir


@knowledge.command("check", with_appcontext=False)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Knowledge folder (default: CDS_KNOWLEDGE_DIR or ./knowledge).",
)
def knowledge_check(directory: str | None) -> None:
    """Validate the knowledge: schemas, references, quotes, ICD-10-CM codes, expansions."""
    from .knowledge_files import check_knowledge, load_knowledge

    path = _knowledge_dir(directory)
    problems = check_knowledge(path)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        _fail(f"knowledge check failed with {len(problems)} problem(s) in {path}")
    kb = load_knowledge(path)
    codes = sum(len(v.codes) for v in kb.valuesets.values())
    click.echo(
        f"knowledge ok: {len(kb.valuesets)} value sets ({codes} codes), {len(kb.rules)} rules, "
        f"{len(kb.measures)} measures, {len(kb.services)} services; version {kb.version}"
    )


@knowledge.command("expand", with_appcontext=False)
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None)
def knowledge_expand(directory: str | None) -> None:
    """Write expansions.json from the CMS ICD-10-CM hierarchy."""
    from .core.knowledge import KnowledgeError
    from .knowledge_files import write_expansions

    try:
        path = write_expansions(_knowledge_dir(directory))
    except KnowledgeError as exc:
        _fail("; ".join(exc.problems))
    click.echo(f"wrote {path}")
