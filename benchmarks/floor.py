"""The benchmark's floor: the bare endpoint an integrator would write, on gunicorn sync workers.

`POST /floor` parses the body with Flask's own `request.get_json()` and answers
`{"cards": []}`; `GET /healthz` says it is up. Run as `gunicorn -w 2 -k sync
benchmarks.floor:app`. It exists only here, never in the service.
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/floor")
def floor() -> Response:
    request.get_json()
    return Response('{"cards":[]}', mimetype="application/json")


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok", mimetype="text/plain")
