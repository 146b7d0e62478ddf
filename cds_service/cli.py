"""The `cds-service` command: serve, the database, the report, knowledge and testers' tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .settings import Settings

if TYPE_CHECKING:
    from .tester_tools.tester import InProcessService


@click.group(context_settings={"max_content_width": 100})
def main() -> None:
    """Back-spasm CDS Hooks service.

    Settings come from CDS_* environment variables (see the README); no command reads them, or
    builds the service, just to show its help.
    """


def _fail(message: str) -> NoReturn:
    click.echo(f"cds-service: {message}", err=True)
    sys.exit(2)


@main.command("serve")
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


@knowledge.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Knowledge folder (default: CDS_KNOWLEDGE_DIR or ./knowledge).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail, instead of warning, when a rule can never fire (its value sets hold no code).",
)
def knowledge_check(directory: str | None, strict: bool) -> None:
    """Validate the knowledge: schemas, references, quotes, ICD-10-CM codes, expansions.

    A rule that can never fire (every value set it reads is empty) is listed as a warning, or
    as an error with --strict.
    """
    from .core.knowledge import rules_that_cannot_fire
    from .knowledge_files import check_knowledge, load_knowledge

    path = _knowledge_dir(directory)
    problems = check_knowledge(path)
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        _fail(f"knowledge check failed with {len(problems)} problem(s) in {path}")
    kb = load_knowledge(path)
    silent = rules_that_cannot_fire(kb)
    for reason in silent:
        click.echo(f"{'error' if strict else 'warning'}: {reason}", err=True)
    if silent and strict:
        _fail(f"knowledge check failed: {len(silent)} rule(s) can never fire in {path}")
    codes = sum(len(v.codes) for v in kb.valuesets.values())
    click.echo(
        f"knowledge ok: {len(kb.valuesets)} value sets ({codes} codes), {len(kb.rules)} rules, "
        f"{len(kb.measures)} measures, {len(kb.services)} services; version {kb.version}"
        + (f"; {len(silent)} rule(s) can never fire (see the warnings)" if silent else "")
    )


@knowledge.command("expand")
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


class RegistryHooks(click.Choice):
    """The hooks of the knowledge's registry (hooks.yaml), read when the option is used."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from pydantic import ValidationError

        from .knowledge_files import hook_names

        try:
            directory = Settings().knowledge_dir
        except ValidationError:  # the command reports the bad settings; --help still works
            directory = Settings.model_fields["knowledge_dir"].default
        return hook_names(directory)

    @choices.setter
    def choices(self, _value: object) -> None:
        """Set by click.Choice's constructor; the registry is the one list."""


def hook_option(default: str | None = "patient-view", help: str | None = None) -> Any:
    """The hooks this service answers (the registry's), as a command option."""
    return click.option(
        "--hook", type=RegistryHooks(), default=default, show_default=True, help=help
    )


@main.group("samples")
def samples() -> None:
    """Synthetic sample patients (examples/charts)."""


@samples.command("list")
def samples_list() -> None:
    """List the sample charts and what a clinician expects of each."""
    from tabulate import tabulate

    from .tester_tools.samples import load_index

    _, charts = load_index()
    rows = [(c.name, c.patient_id, ", ".join(c.indicators) or "no card") for c in charts]
    click.echo(tabulate(rows, ["chart", "patient id", "expected cards"], tablefmt="simple"))


@samples.command("request")
@click.argument("chart_name")
@hook_option(None, help="The hook to call (default: the chart's own).")
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Date the chart is rolled to (default: today).",
)
def samples_request(chart_name: str, hook: str | None, today: object) -> None:
    """Print a CDS Hooks request for a sample chart, prefetch filled, dates rolled to today."""
    import datetime as dt
    import json

    from .knowledge_files import load_knowledge
    from .tester_tools.samples import load_index, sample_request

    _, charts = load_index()
    chart = next((c for c in charts if c.name == chart_name), None)
    if chart is None:
        _fail(f"no sample chart named {chart_name!r} (see `cds-service samples list`)")
    day = today.date() if isinstance(today, dt.datetime) else dt.datetime.now(dt.UTC).date()
    request = sample_request(load_knowledge(Settings().knowledge_dir), chart, day, hook=hook)
    click.echo(json.dumps(request, indent=2))


@samples.command("load")
@click.option("--fhir-server", "fhir_server", required=True, help="FHIR R4 base URL.")
@click.option("--token", default=None, help="Bearer token for the FHIR server, if it needs one.")
@click.option(
    "--chart", "charts", multiple=True, help="Load only this chart (repeatable; default: all)."
)
def samples_load(fhir_server: str, token: str | None, charts: tuple[str, ...]) -> None:
    """Load the sample charts, dated today, into a FHIR R4 server (one transaction each)."""
    import datetime as dt

    from .tester_tools.tester import TesterError, load_samples

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

    from . import create_app
    from .storage.database import upgrade
    from .tester_tools.tester import InProcessService

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


def _http_url(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An http(s) URL with a host, or a usage error that says so."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not an http(s) URL, e.g. http://127.0.0.1:8090/fhir"
        )
    return value


def service_base(url: str) -> str:
    """The service's base URL, given it or its discovery URL (…/cds-services)."""
    base = url.rstrip("/")
    return base.removesuffix("/cds-services")


@main.command("try")
@click.option(
    "--fhir-server", "fhir_server", required=True, callback=_http_url, help="FHIR R4 base URL."
)
@click.option("--patient", "patient_id", required=True, help="The patient's FHIR id.")
@hook_option()
@click.option(
    "--draft-orders",
    "draft_orders",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Draft orders for an order hook: a JSON Bundle or one resource "
    "(order-select selects them all).",
)
@click.option(
    "--service",
    "service_url",
    default=None,
    callback=_http_url,
    help="A running service: its base or discovery URL (default: the service, in this process).",
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
    draft_orders: Path | None,
) -> None:
    """Act as an EHR: call the service for one patient of a FHIR server and show the cards."""
    from .knowledge_files import load_knowledge
    from .tester_tools.samples import DraftOrdersError, read_draft_orders
    from .tester_tools.tester import RemoteService, Service, TesterError, render_cards, try_service

    hooks = load_knowledge(Settings().knowledge_dir).hooks
    if draft_orders is not None and "bundle" not in hooks[hook].data.values():
        _fail(f"--draft-orders: the {hook} hook carries no draft orders")
    try:
        drafts = read_draft_orders(draft_orders) if draft_orders is not None else []
    except DraftOrdersError as exc:
        _fail(f"--draft-orders: {exc}")
    try:
        service: Service = (
            RemoteService(service_base(service_url))
            if service_url
            else _in_process_service(fhir_server)
        )
        call = try_service(
            service,
            fhir_server,
            patient_id,
            hook=hooks[hook],
            token=token,
            prefetch=not no_prefetch,
            encounter_id=encounter_id,
            drafts=drafts,
        )
    except TesterError as exc:
        _fail(str(exc))
    for line in render_cards(call, patient_id):
        click.echo(line)


@main.group("db")
def db() -> None:
    """The service's database (CDS_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
def db_upgrade(revision: str) -> None:
    """Bring the database to the current schema (creating it if needed)."""
    from .storage.database import current_revision, make_engine, upgrade

    url = Settings().resolved_database_url()
    try:
        upgrade(url, revision)
        engine = make_engine(url)
        now = current_revision(engine)
        engine.dispose()
    except Exception as exc:  # a driver or migration error: one clear line
        _fail(f"database upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    click.echo(f"database at revision {now}")


@db.command("purge")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(1, 36_500),
    default=None,
    help="Remove what is older than this many days (default: CDS_RETENTION_DAYS).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=500,
    show_default=True,
    help="Calls (or feedback items) removed per transaction.",
)
def db_purge(days: int | None, batch_size: int) -> None:
    """Remove audit records and feedback past the retention period, in bounded batches."""
    from .storage.database import make_engine, schema_problem
    from .storage.retention import cutoff_for, purge

    settings = Settings()
    days = days or settings.retention_days
    if days is None:
        _fail("say how long to keep records: --older-than DAYS, or set CDS_RETENTION_DAYS")
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=max(10.0, settings.database_timeout_seconds))
    try:
        problem = schema_problem(engine, url)
        if problem:
            _fail(problem)
        try:
            purged = purge(engine, cutoff_for(days), batch_size=batch_size)
        except Exception as exc:  # a driver error: one clear line; the batches done stay done
            _fail(f"purge stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    finally:
        engine.dispose()
    for line in purged.lines():
        click.echo(line)


def default_report_path(now: object = None) -> Path:
    """Where an HTML report goes by default: the user's home, never the repository."""
    import datetime as dt

    stamp = (now if isinstance(now, dt.datetime) else dt.datetime.now(dt.UTC)).strftime(
        "%Y%m%d-%H%M%S"
    )
    return Path.home() / "cds-service-reports" / f"rule-report-{stamp}.html"


_DAY = click.DateTime(formats=["%Y-%m-%d"])


@main.command("report")
@click.option(
    "--since", type=_DAY, default=None, help="Only calls made on or after this day (UTC)."
)
@click.option(
    "--until", type=_DAY, default=None, help="Only calls made on or before this day (UTC)."
)
@click.option(
    "--min-cards",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="Fewer cards than this and a rule is marked too few to judge.",
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
    help=(
        "Write to this file. Default: standard output; for html, "
        "~/cds-service-reports/rule-report-<time>.html (outside the repository: it holds "
        "clinicians' comments)."
    ),
)
def report(
    since: object, until: object, min_cards: int, output_format: str, output: str | None
) -> None:
    """Rule performance from the audit trail and feedback (CDS_DATABASE_URL)."""
    import datetime as dt

    from .core.knowledge import KnowledgeError
    from .knowledge_files import load_knowledge
    from .storage.database import make_engine, schema_problem
    from .storage.report import RENDERERS, build_report

    first = since.date() if isinstance(since, dt.datetime) else None
    last = until.date() if isinstance(until, dt.datetime) else None
    if first and last and last < first:
        _fail("--until is before --since")
    settings = Settings()
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=10.0)
    try:
        problem = schema_problem(engine, url)
        if problem:
            _fail(problem)
        try:
            kb = load_knowledge(settings.knowledge_dir)  # rule and card titles, reason displays
        except KnowledgeError:
            kb = None
        built = build_report(engine, first, kb, until=last, min_cards=min_cards)
        text = RENDERERS[output_format](built)
    finally:
        engine.dispose()
    target = Path(output) if output else None
    if target is None and output_format == "html":
        target = default_report_path()
        target.parent.mkdir(parents=True, exist_ok=True)
    if target:
        target.write_text(text, encoding="utf-8")
        click.echo(f"wrote {target}", err=True)
    else:
        click.echo(text, nl=False)
