"""A served worker collects its young generation rarely: a call frees what it allocates."""

from __future__ import annotations

import gc
from types import SimpleNamespace

from flask import Flask

from cds_service import server
from cds_service.settings import Settings
from cds_service.web.state import EXTENSION_KEY


def test_a_worker_freezes_its_app_and_raises_the_young_threshold(monkeypatch):
    calls: list[tuple[str, tuple[int, ...]]] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(("freeze", ())))
    monkeypatch.setattr(gc, "set_threshold", lambda *t: calls.append(("threshold", t)))

    def build(_settings: Settings) -> Flask:
        app = Flask(__name__)
        app.extensions[EXTENSION_KEY] = SimpleNamespace(audit=None)
        return app

    served = server.worker_app(Settings(), build)
    assert served.threads == server.THREADS_PER_WORKER
    (threshold,) = [t for name, t in calls if name == "threshold"]
    assert threshold == (server.GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    assert [name for name, _ in calls] == ["freeze", "threshold"]
