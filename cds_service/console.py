"""What every `cds-service` command shares: a failure is one line on standard error, status 2."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """Say why the command cannot go on, in one line, and exit with status 2."""
    click.echo(f"cds-service: {message}", err=True)
    sys.exit(2)
