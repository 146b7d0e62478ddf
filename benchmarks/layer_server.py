"""One layer of a served call at a time, for the benchmark's CPU breakdown (table 2b).

Every layer runs on the serving stack `cds-service serve` runs (granian, the buffered-body
adapter, its threads and the workers' collector settings) and answers the service's path:

- `stack`: the body is read and not parsed; the answer is `{"cards": []}`;
- `parse`: the service's body reader (depth scan, JSON parse), then `{"cards": []}`;
- `core`: the whole core as benchmark table 1 runs it (parse, envelope, gather, findings,
  rules, cards, FHIR check, answer), without the service's hooks, metrics and audit trail;
- `no-audit-writes`: the service itself, its audit records built but not written.

The service with everything is the benchmark's own `service_server`. What a layer adds is its
CPU per request less the layer before it. Development mode (no JWT), as `service_server`.
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from flask import Flask, Response, request

from benchmarks.bench import LAYERS, SERVICE_PATH, pipeline
from benchmarks.service_server import build_app
from cds_service import Settings
from cds_service.knowledge_files import load_knowledge
from cds_service.server import granian_server, served, worker_app
from cds_service.web.body import BUFFERED_BODY, read_json_body
from cds_service.web.state import EXTENSION_KEY

EMPTY_ANSWER = b'{"cards":[]}'


def layer_app(layer: str, settings: Settings) -> Flask:
    """A bare Flask application that does the work of `layer` (one of stack, parse, core)."""
    app = Flask("layer")
    today = dt.datetime.now(dt.UTC).date()
    run = (
        pipeline(load_knowledge(settings.knowledge_dir), settings, today)
        if layer == "core"
        else None
    )

    @app.post(SERVICE_PATH)
    def call() -> Response:
        if layer == "parse":
            read_json_body(settings.max_body_bytes, settings.max_json_depth)
            return Response(EMPTY_ANSWER, mimetype="application/json")
        raw = request.environ.pop(BUFFERED_BODY, None) or request.get_data(cache=False)
        answer = run(raw) if run is not None else EMPTY_ANSWER
        return Response(answer, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    return app


def _without_audit_writes(settings: Settings) -> Flask:
    app = build_app(settings)
    app.extensions[EXTENSION_KEY].audit = None  # records are built, then not handed to a writer
    return app


def worker_for(layer: str, settings: Settings) -> Any:
    if layer == "no-audit-writes":
        return worker_app(settings, _without_audit_writes)
    return served(layer_app(layer, settings), settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", choices=LAYERS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = Settings().model_copy(update={"allow_unauthenticated": True})
    server = granian_server(settings, host="127.0.0.1", port=args.port, workers=args.workers)
    server.serve(target_loader=lambda _label: worker_for(args.layer, settings))


if __name__ == "__main__":
    main()
