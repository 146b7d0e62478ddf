"""The `cds-service` command: serve, and the knowledge tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

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


def _fail(message: str) -> NoReturn:
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


@main.group("samples")
def samples() -> None:
    """Synthetic sample patients (examples/charts)."""


@samples.command("list", with_appcontext=False)
def samples_list() -> None:
    """List the sample charts and what a clinician expects of each."""
    from .samples import load_index

    _, charts = load_index()
    for chart in charts:
        shown = ", ".join(chart.indicators) or "no card"
        click.echo(f"{chart.name:45} {chart.patient_id:32} {shown}")


@samples.command("request", with_appcontext=False)
@click.argument("chart_name")
@click.option(
    "--hook",
    type=click.Choice(["patient-view", "encounter-start"]),
    default="patient-view",
    show_default=True,
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date the chart is rolled to (default: today).",
)
def samples_request(chart_name: str, hook: str, today: object) -> None:
    """Print a CDS Hooks request for a sample chart, prefetch filled, dates rolled to today."""
    import datetime as dt
    import json

    from .knowledge_files import load_knowledge
    from .samples import load_index, sample_request

    _, charts = load_index()
    chart = next((c for c in charts if c.name == chart_name), None)
    if chart is None:
        _fail(f"no sample chart named {chart_name!r} (see `cds-service samples list`)")
    day = today.date() if isinstance(today, dt.datetime) else dt.datetime.now(dt.UTC).date()
    request = sample_request(load_knowledge(Settings().knowledge_dir), chart, day, hook=hook)
    click.echo(json.dumps(request, indent=2))


@main.group("db")
def db() -> None:
    """The service's database (CDS_DATABASE_URL)."""


@db.command("upgrade", with_appcontext=False)
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
def db_upgrade(revision: str) -> None:
    """Bring the database to the current schema (creating it if needed)."""
    from .db import current_revision, make_engine, upgrade

    url = Settings().resolved_database_url()
    try:
        upgrade(url, revision)
        engine = make_engine(url)
        now = current_revision(engine)
        engine.dispose()
    except Exception as exc:  # a driver or migration error: one clear line
        _fail(f"database upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    click.echo(f"database at revision {now}")
