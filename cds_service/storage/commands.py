"""`cds-service db upgrade|purge` and `cds-service report`: the database (`database`,
`retention`) and the rule-performance report (`report`) on the command line."""

from __future__ import annotations

from pathlib import Path

import click

from ..console import fail
from ..settings import Settings


@click.group("db")
def db() -> None:
    """The service's database (CDS_DATABASE_URL)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target schema revision.")
def db_upgrade(revision: str) -> None:
    """Bring the database to the current schema (creating it if needed)."""
    from .database import current_revision, make_engine, upgrade

    url = Settings().resolved_database_url()
    try:
        upgrade(url, revision)
        engine = make_engine(url)
        now = current_revision(engine)
        engine.dispose()
    except Exception as exc:  # a driver or migration error: one clear line
        fail(f"database upgrade failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
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
    from .database import make_engine, schema_problem
    from .retention import cutoff_for, purge

    settings = Settings()
    days = days or settings.retention_days
    if days is None:
        fail("say how long to keep records: --older-than DAYS, or set CDS_RETENTION_DAYS")
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=max(10.0, settings.database_timeout_seconds))
    try:
        problem = schema_problem(engine, url)
        if problem:
            fail(problem)
        try:
            purged = purge(engine, cutoff_for(days), batch_size=batch_size)
        except Exception as exc:  # a driver error: one clear line; the batches done stay done
            fail(f"purge stopped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
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


@click.command("report")
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

    from ..core.knowledge import KnowledgeError
    from ..knowledge_files import load_knowledge
    from .database import make_engine, schema_problem
    from .report import RENDERERS, build_report

    first = since.date() if isinstance(since, dt.datetime) else None
    last = until.date() if isinstance(until, dt.datetime) else None
    if first and last and last < first:
        fail("--until is before --since")
    settings = Settings()
    url = settings.resolved_database_url()
    engine = make_engine(url, connect_timeout_s=10.0)
    try:
        problem = schema_problem(engine, url)
        if problem:
            fail(problem)
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
