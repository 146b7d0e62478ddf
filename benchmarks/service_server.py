"""The service as `cds-service serve` runs it (granian, buffered bodies), for the benchmark.

Development mode (no JWT) and no access log: the load is the same request many times.
"""

from __future__ import annotations

import argparse
import logging

from flask import Flask

from cds_service import Settings, create_app
from cds_service.server import granian_server, worker_app


def build_app(settings: Settings) -> Flask:
    logging.getLogger("cds_service.access").setLevel(logging.WARNING)
    return create_app(settings)


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
