"""HTTP access to a client's FHIR server: one pooled session and one thread pool per application.

Every request is a GET of FHIR JSON under the one `fhirServer` base it is given, with (connect,
read) timeouts cut to what is left of the call's deadline, no redirects, no cookies, no proxy or
.netrc from the environment, and a bounded body. The access token goes only into the
Authorization header of those requests: never into a log line, an error or anywhere else.
Errors are `FetchError`s whose message is safe to show a client: no URL, no token, no patient data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from http.cookiejar import DefaultCookiePolicy
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from .fhir_policy import is_under

log = logging.getLogger(__name__)
T = TypeVar("T")

FHIR_JSON = "application/fhir+json"
JSON_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
#: Most connections kept open to one FHIR server, and most fetches running at once, per worker.
POOL_SIZE = 16
CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """A FHIR request gave no usable answer. The message says why, with no URL or token in it."""


def new_session(pool_size: int = POOL_SIZE) -> requests.Session:
    """A session with a connection pool per host, no retries, no cookies, nothing from the env."""
    session = requests.Session()
    session.trust_env = False  # no proxy variables, and no .netrc credentials on our requests
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _transport_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "the FHIR server did not accept a connection in time"
    if isinstance(exc, requests.ReadTimeout):
        return "the FHIR server did not answer in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS connection to the FHIR server failed"
    if isinstance(exc, requests.ConnectionError):
        return "could not connect to the FHIR server"
    return f"the request to the FHIR server failed ({type(exc).__name__})"


def _status_reason(status: int) -> str:
    if 300 <= status < 400:
        return f"the FHIR server answered with a redirect (HTTP {status}), which is not followed"
    names = {401: "unauthorized", 403: "forbidden", 404: "not found", 410: "gone"}
    name = names.get(status, "server error" if status >= 500 else "refused")
    return f"the FHIR server answered HTTP {status} ({name})"


def parse_fhir_json(raw: bytes) -> dict[str, Any]:
    """A FHIR resource from a body, or `FetchError`."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise FetchError("the FHIR server's answer is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FetchError("the FHIR server's answer is not a FHIR resource")
    return body


class FhirClient:
    """GETs FHIR JSON from a client's FHIR server, in parallel, within a deadline."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_body_bytes: int,
        pool_size: int = POOL_SIZE,
    ):
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_body_bytes = max_body_bytes
        self._session = new_session(pool_size)
        self._pool = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="fhir-fetch")
        # urllib3 logs every request line at DEBUG, patient ids included: keep that out of logs.
        logging.getLogger("urllib3").setLevel(logging.WARNING)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def get(self, base: str, url: str, token: str | None, deadline: float) -> dict[str, Any]:
        """The FHIR resource at `url`, which must lie under `base`; `FetchError` otherwise."""
        if not is_under(url, base):
            raise FetchError("a link outside the fhirServer base was not followed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError("the time budget for the FHIR server ran out")
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            response = self._session.get(
                url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise FetchError(_transport_reason(exc)) from None
        with response:
            if response.status_code != 200:
                raise FetchError(_status_reason(response.status_code))
            media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if media not in JSON_MEDIA_TYPES:
                raise FetchError("the FHIR server's answer is not FHIR JSON")
            return parse_fhir_json(self._read_body(response, deadline))

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise FetchError(
                        f"the FHIR server's answer is larger than {self.max_body_bytes} bytes"
                    )
                if time.monotonic() > deadline:
                    raise FetchError("the FHIR server did not answer within the time budget")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise FetchError(_transport_reason(exc)) from None
        return b"".join(chunks)

    def run_all(
        self, tasks: Mapping[str, Callable[[], T]], deadline: float
    ) -> dict[str, T | FetchError]:
        """Run the tasks in parallel; a task not done by the deadline is a `FetchError`."""
        futures = {key: self._pool.submit(task) for key, task in tasks.items()}
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        return {key: _outcome(key, future) for key, future in futures.items()}


def _outcome(key: str, future: Future[T]) -> T | FetchError:
    if not future.done():
        future.cancel()
        return FetchError("the FHIR server did not answer within the time budget")
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, FetchError):
        return exc
    log.error("unexpected %s while fetching prefetch key %s", type(exc).__name__, key)
    return FetchError("unexpected error while reading the FHIR server's answer")
