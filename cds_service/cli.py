"""The `cds-service` command: one group, and the commands of each part registered on it.

Each command lives beside what it drives: `serve` in `server_commands`, `knowledge` in
`knowledge_commands`, `samples` and `try` in `tester_tools.commands`, `db` and `report` in
`storage.commands`.
"""

from __future__ import annotations

import click

from .knowledge_commands import knowledge
from .server_commands import serve
from .storage.commands import db, report
from .tester_tools.commands import samples, try_command


@click.group(context_settings={"max_content_width": 100})
def main() -> None:
    """Back-spasm CDS Hooks service.

    Settings come from CDS_* environment variables (see the README); no command reads them, or
    builds the service, just to show its help.
    """


for command in (serve, knowledge, samples, try_command, db, report):
    main.add_command(command)
