"""The benchmark's server: the real service plus a floor route, on the production server setup.

`POST /floor` reads and parses the same JSON body and answers `{"cards": []}`: the cost of
receiving a request on this stack, against which the service's own work is measured. It exists
only here, never in the service.
"""

from __future__ import annotations

import argparse
import json

from flask import Flask, Response, request

from cds_service import Settings, create_app
from cds_service.server import ServiceApplication, gunicorn_options


def add_floor_route(app: Flask) -> Flask:
    @app.post("/floor")
    def floor() -> Response:
        json.loads(request.get_data(cache=False))
        return Response('{"cards":[]}', mimetype="application/json")

    return app


class BenchmarkApplication(ServiceApplication):
    """The service's gunicorn application, with the floor route added to each worker's app."""

    def build_app(self) -> Flask:
        return add_floor_route(create_app(self.settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    settings = Settings().model_copy(update={"allow_unauthenticated": True})
    options = gunicorn_options("127.0.0.1", args.port, args.workers)
    options.update(accesslog=None, loglevel="warning")
    BenchmarkApplication(settings, options).run()


if __name__ == "__main__":
    main()
