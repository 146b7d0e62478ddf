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
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from http.cookiejar import DefaultCookiePolicy
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..deadlines import DEADLINES
from .fhir_policy import is_under

log = logging.getLogger(__name__)
T = TypeVar("T")

FHIR_JSON = "application/fhir+json"
JSON_MEDIA_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
#: Most connections kept open to one FHIR server, and most fetches running at once, per worker.
POOL_SIZE = 16
CHUNK_BYTES = 64 * 1024
OUT_OF_TIME = "the FHIR server did not answer within the time budget"

#: The deadline of the fetch the current thread is running (time.monotonic), if any.
_fetch = threading.local()


def _fetch_key() -> tuple[str, int]:
    return ("fhir-fetch", threading.get_ident())


class _DeadlineMixin:
    """A connection whose socket is shut down at the current fetch's deadline, whatever the
    server does: a server that drips its answer a byte at a time cannot hold a thread longer."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._arm()

    def request(self, *args: Any, **kwargs: Any) -> None:
        if self.sock is not None:  # a kept-alive connection: no connect() this time
            self._arm()
        super().request(*args, **kwargs)  # type: ignore[misc]

    def _arm(self) -> None:
        deadline = getattr(_fetch, "deadline", None)
        if deadline is not None and self.sock is not None:
            DEADLINES.arm(_fetch_key(), self.sock, deadline)


class _DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class FetchError(Exception):
    """A FHIR request gave no usable answer. The message says why, with no URL or token in it."""


def new_session(pool_size: int = POOL_SIZE) -> requests.Session:
    """A session with a connection pool per host, no retries, no cookies, nothing from the env."""
    session = requests.Session()
    session.trust_env = False  # no proxy variables, and no .netrc credentials on our requests
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=pool_size, max_retries=0)
    adapter.poolmanager.pool_classes_by_scheme = {
        "http": _DeadlineHTTPPool,
        "https": _DeadlineHTTPSPool,
    }
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
        self._per_server_limit = max(1, pool_size // 2)
        self._per_server_lock = threading.Lock()
        self._per_server: defaultdict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(self._per_server_limit)
        )
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
        _fetch.deadline = deadline
        try:
            return self._get(url, headers, remaining, deadline)
        finally:
            _fetch.deadline = None
            DEADLINES.disarm(_fetch_key())

    def _get(
        self, url: str, headers: dict[str, str], remaining: float, deadline: float
    ) -> dict[str, Any]:
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            response = self._session.get(
                url, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise FetchError(_late_or(deadline, _transport_reason(exc))) from None
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
                    raise FetchError(OUT_OF_TIME)
                chunks.append(chunk)
        except (requests.RequestException, OSError) as exc:
            reason = _transport_reason(exc) if isinstance(exc, requests.RequestException) else ""
            raise FetchError(_late_or(deadline, reason or "the connection failed")) from None
        return b"".join(chunks)

    def run_all(
        self, tasks: Mapping[str, Callable[[], T]], deadline: float, server: str = ""
    ) -> dict[str, T | FetchError]:
        """Run the tasks in parallel; a task not done by the deadline is a `FetchError`.

        At most `pool_size // 2` fetches from one `server` run at once in this process; a task
        that gets no turn before the deadline is a `FetchError` too.
        """
        with self._per_server_lock:
            turns = self._per_server[server]
        futures: dict[str, Future[T]] = {}
        for key, task in tasks.items():
            if not turns.acquire(timeout=max(0.0, deadline - time.monotonic())):
                futures[key] = _failed(FetchError(BUSY_SERVER))
                continue
            futures[key] = self._pool.submit(_then_release(task, turns))
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        return {key: _outcome(key, future) for key, future in futures.items()}


BUSY_SERVER = (
    "the FHIR server already has as many requests running as it may; none was free in time"
)


def _late_or(deadline: float, reason: str) -> str:
    """The reason a fetch failed: the time budget, when it ran out (the socket was shut)."""
    return OUT_OF_TIME if time.monotonic() >= deadline else reason


def _then_release(task: Callable[[], T], turns: threading.BoundedSemaphore) -> Callable[[], T]:
    def run() -> T:
        try:
            return task()
        finally:
            turns.release()

    return run


def _failed(exc: Exception) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_exception(exc)
    return future


def _outcome(key: str, future: Future[T]) -> T | FetchError:
    if not future.done():
        future.cancel()
        return FetchError(OUT_OF_TIME)
    exc = future.exception()
    if exc is None:
        return future.result()
    if isinstance(exc, FetchError):
        return exc
    log.error("unexpected %s while fetching prefetch key %s", type(exc).__name__, key)
    return FetchError("unexpected error while reading the FHIR server's answer")
