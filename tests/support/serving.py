"""`cds-service serve` on loopback (granian, real worker processes) for the storage tests."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cds_service.knowledge_files import load_knowledge
from cds_service.settings import PROJECT_ROOT
from cds_service.tester_tools.samples import load_index, sample_request
from support.audit_key import TEST_AUDIT_KEY
from support.served import serve


@contextmanager
def serving(database_url: str, folder: Path, workers: int = 2) -> Iterator[str]:
    """The service on granian with `workers` processes; stopped gracefully (SIGTERM)."""
    env = {
        **os.environ,
        "CDS_DATABASE_URL": database_url,
        "CDS_INSTANCE_PATH": str(folder / "instance"),
        "CDS_AUDIT_KEY": TEST_AUDIT_KEY,
    }
    served = serve(env, folder / "server.log", "--allow-unauthenticated", workers=workers)
    try:
        yield served.url
    finally:
        served.stop()


def red_flag_request() -> dict[str, Any]:
    """A sample request dated today, with a new cauda equina red flag."""
    kb = load_knowledge(PROJECT_ROOT / "knowledge")
    _, charts = load_index()
    chart = next(c for c in charts if c.name == "ces-new-urinary-retention")
    return sample_request(kb, chart, dt.datetime.now(dt.UTC).date())
