"""The folder where every worker process keeps its metrics (prometheus_client multiprocess mode).

Imports nothing of prometheus_client: the folder must be named in the environment before the
library is first imported, since the library chooses how it stores values at import.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(environ: MutableMapping[str, str] | None = None) -> Path:
    """This run's metrics folder, emptied; a temporary one (removed at exit) when none is set.

    Call it in the server's main process before the workers start (and before anything
    imports prometheus_client), so that each worker counts in its own files there.
    """
    environ = os.environ if environ is None else environ
    configured = environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's counts
            stale.unlink()
        return folder
    folder = Path(tempfile.mkdtemp(prefix="cds-service-metrics-"))
    atexit.register(_remove_in, os.getpid(), folder)
    environ[MULTIPROC_ENV] = str(folder)
    return folder


def _remove_in(owner_pid: int, folder: Path) -> None:
    """Remove the folder at exit of the process that made it (not of a forked worker)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(folder, ignore_errors=True)
