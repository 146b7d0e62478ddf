"""Instance folders whose SQLite database is already at the current schema, made in a copy."""

from __future__ import annotations

import shutil
import tempfile
from functools import cache
from pathlib import Path

from cds_service.storage.database import upgrade

DATABASE_FILE = "cds.sqlite3"


@cache
def _template() -> Path:
    """One migrated database per test run; every instance gets a copy (cheaper than migrating)."""
    folder = Path(tempfile.mkdtemp(prefix="cds-template-"))
    upgrade(f"sqlite:///{folder / DATABASE_FILE}")
    return folder / DATABASE_FILE


def migrated_instance(path: Path) -> Path:
    """`path`, holding a database at the current schema; returned for use as instance_path."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), path / DATABASE_FILE)
    return path
