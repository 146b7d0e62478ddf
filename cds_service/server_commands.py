"""`cds-service serve`: run the service on granian (`server`)."""

from __future__ import annotations

import click

from .console import fail
from .settings import Settings


@click.command("serve")
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
        fail(str(exc))
