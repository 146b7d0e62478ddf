"""`cds-service knowledge check|expand`: the knowledge folder, read by `knowledge_files`."""

from __future__ import annotations

from pathlib import Path

import click

from .console import fail
from .settings import Settings


@click.group("knowledge")
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
        fail(f"knowledge check failed with {len(problems)} problem(s) in {path}")
    kb = load_knowledge(path)
    silent = rules_that_cannot_fire(kb)
    for reason in silent:
        click.echo(f"{'error' if strict else 'warning'}: {reason}", err=True)
    if silent and strict:
        fail(f"knowledge check failed: {len(silent)} rule(s) can never fire in {path}")
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
        fail("; ".join(exc.problems))
    click.echo(f"wrote {path}")
