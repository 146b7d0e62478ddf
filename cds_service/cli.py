"""The `cds-service` command: serve, and the knowledge tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from flask.cli import FlaskGroup

from . import create_app
from .settings import Settings

if TYPE_CHECKING:
    from .tester import InProcessService


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
    """Run the service on granian, the production server (pre-forked workers)."""
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


#: The hooks this service answers, as a command option.
hook_option = click.option(
    "--hook",
    type=click.Choice(["patient-view", "encounter-start"]),
    default="patient-view",
    show_default=True,
)


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
@hook_option
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


@samples.command("load", with_appcontext=False)
@click.option("--fhir-server", "fhir_server", required=True, help="FHIR R4 base URL.")
@click.option("--token", default=None, help="Bearer token for the FHIR server, if it needs one.")
@click.option(
    "--chart", "charts", multiple=True, help="Load only this chart (repeatable; default: all)."
)
def samples_load(fhir_server: str, token: str | None, charts: tuple[str, ...]) -> None:
    """Load the sample charts, dated today, into a FHIR R4 server (one transaction each)."""
    import datetime as dt

    from .tester import TesterError, load_samples

    today = dt.datetime.now(dt.UTC).date()
    count = total = 0
    try:
        for loaded in load_samples(fhir_server, token, today, charts):
            click.echo(
                f"loaded {loaded.chart.name} (Patient/{loaded.chart.patient_id}, "
                f"{loaded.resources} resources)"
            )
            count += 1
            total += loaded.resources
    except TesterError as exc:
        _fail(str(exc))
    click.echo(f"{count} sample charts, {total} resources, loaded into {fhir_server}")


def _in_process_service(fhir_server: str) -> InProcessService:
    """The service built here, in development mode, allowed to call `fhir_server`.

    Its local state (the database) lives in a temporary folder, removed at exit.
    """
    import atexit
    import shutil
    import tempfile

    from .db import upgrade
    from .tester import InProcessService

    folder = Path(tempfile.mkdtemp(prefix="cds-service-try-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    settings = Settings()
    update = {
        "instance_path": folder,
        "database_url": "",
        "allow_unauthenticated": True,
        "allowed_fhir_servers": (*settings.allowed_fhir_servers, fhir_server),
        "log_level": "WARNING",
    }
    settings = settings.model_copy(update=update)
    upgrade(settings.resolved_database_url())
    return InProcessService(create_app(settings))


@main.command("try", with_appcontext=False)
@click.option("--fhir-server", "fhir_server", required=True, help="FHIR R4 base URL.")
@click.option("--patient", "patient_id", required=True, help="The patient's FHIR id.")
@hook_option
@click.option(
    "--service",
    "service_url",
    default=None,
    help="Base URL of a running service (default: the service, in this process).",
)
@click.option("--token", default=None, help="Bearer token for the FHIR server, if any.")
@click.option(
    "--no-prefetch",
    is_flag=True,
    help="Send no prefetch: the service fetches what it needs from the FHIR server.",
)
@click.option("--encounter", "encounter_id", default=None, help="Encounter id (encounter-start).")
def try_command(
    fhir_server: str,
    patient_id: str,
    hook: str,
    service_url: str | None,
    token: str | None,
    no_prefetch: bool,
    encounter_id: str | None,
) -> None:
    """Act as an EHR: call the service for one patient of a FHIR server and show the cards."""
    from .tester import RemoteService, Service, TesterError, render_cards, try_service

    try:
        service: Service = (
            RemoteService(service_url) if service_url else _in_process_service(fhir_server)
        )
        call = try_service(
            service,
            fhir_server,
            patient_id,
            hook=hook,
            token=token,
            prefetch=not no_prefetch,
            encounter_id=encounter_id,
        )
    except TesterError as exc:
        _fail(str(exc))
    for line in render_cards(call, patient_id):
        click.echo(line)


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


@main.command("report", with_appcontext=False)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only calls made on or after this day (UTC), YYYY-MM-DD.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Write to this file instead of standard output.",
)
def report(since: object, output_format: str, output: str | None) -> None:
    """Rule performance from the audit trail and feedback (CDS_DATABASE_URL)."""
    import datetime as dt

    from .core.knowledge import KnowledgeError
    from .db import make_engine, schema_problem
    from .knowledge_files import load_knowledge
    from .memory.report import RENDERERS, build_report

    settings = Settings()
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=10.0)
    try:
        problem = schema_problem(engine, url)
        if problem:
            _fail(problem)
        try:
            kb = load_knowledge(settings.knowledge_dir)  # for the override reasons' displays
        except KnowledgeError:
            kb = None
        day = since.date() if isinstance(since, dt.datetime) else None
        text = RENDERERS[output_format](build_report(engine, day, kb))
    finally:
        engine.dispose()
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
