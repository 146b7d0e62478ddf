"""`cds-service samples list|request|load` and `cds-service try`: the testers' tools (`samples`,
`tester`) on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..console import fail
from ..settings import Settings

if TYPE_CHECKING:
    from .tester import InProcessService


class RegistryHooks(click.Choice):
    """The hooks of the knowledge's registry (hooks.yaml), read when the option is used."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        from pydantic import ValidationError

        from ..knowledge_files import hook_names

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


@click.group("samples")
def samples() -> None:
    """Synthetic sample patients (examples/charts)."""


@samples.command("list")
def samples_list() -> None:
    """List the sample charts and what a clinician expects of each."""
    from tabulate import tabulate

    from .samples import load_index

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

    from ..knowledge_files import load_knowledge
    from .samples import load_index, sample_request

    _, charts = load_index()
    chart = next((c for c in charts if c.name == chart_name), None)
    if chart is None:
        fail(f"no sample chart named {chart_name!r} (see `cds-service samples list`)")
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
        fail(str(exc))
    click.echo(f"{count} sample charts, {total} resources, loaded into {fhir_server}")


def _in_process_service(fhir_server: str) -> InProcessService:
    """The service built here, in development mode, allowed to call `fhir_server`.

    Its local state (the database) lives in a temporary folder, removed at exit.
    """
    import atexit
    import shutil
    import tempfile

    from .. import create_app
    from ..storage.database import upgrade
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


@click.command("try")
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
    from ..knowledge_files import load_knowledge
    from .samples import DraftOrdersError, read_draft_orders
    from .tester import RemoteService, Service, TesterError, render_cards, try_service

    hooks = load_knowledge(Settings().knowledge_dir).hooks
    if draft_orders is not None and "bundle" not in hooks[hook].data.values():
        fail(f"--draft-orders: the {hook} hook carries no draft orders")
    try:
        drafts = read_draft_orders(draft_orders) if draft_orders is not None else []
    except DraftOrdersError as exc:
        fail(f"--draft-orders: {exc}")
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
        fail(str(exc))
    for line in render_cards(call, patient_id):
        click.echo(line)
