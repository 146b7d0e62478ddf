"""The benchmark's server: the real service plus a floor route, on the production server setup.

`POST /floor` reads and parses the same JSON body and answers `{"cards": []}`: the cost of
receiving a request on this stack, against which the service's own work is measured. It exists
only here, never in the service.
"""

from __future__ import annotations

import argparse
import json
import logging

from flask import Flask, Response, request

from cds_service import Settings, create_app
from cds_service.server import granian_server, worker_app


def add_floor_route(app: Flask) -> Flask:
    @app.post("/floor")
    def floor() -> Response:
        json.loads(request.get_data(cache=False))
        return Response('{"cards":[]}', mimetype="application/json")

    return app


def build_app(settings: Settings) -> Flask:
    """The service's application with the floor route, as each worker builds it (no access
    log, as before: the load is the same request many times)."""
    logging.getLogger("cds_service.access").setLevel(logging.WARNING)
    return add_floor_route(create_app(settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = Settings().model_copy(update={"allow_unauthenticated": True})
    server = granian_server(settings, host="127.0.0.1", port=args.port, workers=args.workers)
    server.serve(target_loader=lambda _label: worker_app(settings, build_app))


if __name__ == "__main__":
    main()
