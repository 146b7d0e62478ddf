"""Who is calling: the authenticated CDS client of the current request, if any."""

from __future__ import annotations

from flask import g

from ..core.caller import Caller


def set_caller(caller: Caller | None) -> None:
    g.cds_caller = caller


def current_caller() -> Caller | None:
    """The verified caller of this request; None in development mode or outside a request."""
    return g.get("cds_caller")
