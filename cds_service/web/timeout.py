"""Stop a runaway call: past `CDS_CALL_TIMEOUT_SECONDS` it is interrupted and answered 503.

A watchdog thread per process notes when each call started. A call still running at its
deadline has `CallTimedOut` raised in its thread (at the next Python instruction: a loop, or a
wait that polls, such as the database's and the FHIR client's); the call answers 503 with an
OperationOutcome. If the thread still has not let go after a second period (stuck inside C code),
a served worker stops itself and the server starts a fresh one (`hard_stop`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..core.outcome import operation_outcome
from .responses import json_response

log = logging.getLogger(__name__)
CHECK_EVERY_S = 0.1
RETRY_AFTER_S = "5"


class CallTimedOut(BaseException):
    """Raised in a call's thread when it ran past the call timeout (not an ordinary error)."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in the thread (None clears a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else ctypes.c_void_p(0)
    )


class CallWatchdog:
    """Watches the calls of one process and stops those past their deadline."""

    def __init__(self, timeout_s: float, *, hard_stop: bool):
        self.timeout_s = timeout_s
        self.hard_stop = hard_stop
        self._lock = threading.Lock()
        self._deadlines: dict[int, float] = {}
        self._interrupted: set[int] = set()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start_call(self) -> int:
        self._ensure_thread()
        thread_id = threading.get_ident()
        with self._lock:
            self._deadlines[thread_id] = time.monotonic() + self.timeout_s
        return thread_id

    def end_call(self, thread_id: int) -> None:
        with self._lock:
            self._deadlines.pop(thread_id, None)
            if thread_id in self._interrupted:
                self._interrupted.discard(thread_id)
                _raise_in(thread_id, None)  # not delivered yet: it must not hit the next call

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._watch, name="call-watchdog", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            with self._lock:
                for thread_id, deadline in list(self._deadlines.items()):
                    if now < deadline:
                        continue
                    if thread_id not in self._interrupted:
                        self._interrupted.add(thread_id)
                        log.error("a call ran past %.0f s and is stopped", self.timeout_s)
                        _raise_in(thread_id, CallTimedOut)
                    elif now > deadline + self.timeout_s and self.hard_stop:
                        log.critical(
                            "a call ignored its stop for %.0f s: worker restarts", self.timeout_s
                        )
                        os.kill(os.getpid(), signal.SIGKILL)


def timed_out_response(timeout_s: float) -> Any:
    body = operation_outcome(
        "timeout",
        f"the call took longer than {timeout_s:g} s and was stopped; nothing was decided, "
        "try again shortly",
    )
    return json_response(body, 503, {"Retry-After": RETRY_AFTER_S})


def enforce_call_timeout(
    app: Any, timeout_s: float, *, hard_stop: bool = False
) -> Callable[..., Iterable[bytes]]:
    """The WSGI application `app`, with every call bounded by `timeout_s`."""
    watchdog = CallWatchdog(timeout_s, hard_stop=hard_stop)
    wsgi_app = app.wsgi_app

    def bounded(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        thread_id = watchdog.start_call()
        started: list[bool] = []

        def noting_start(*args: Any) -> Any:
            started.append(True)
            return start_response(*args)

        try:
            return list(wsgi_app(environ, noting_start))
        except CallTimedOut:
            with app.app_context():
                response = timed_out_response(timeout_s)
            # an answer whose headers were set (never sent: they go out at return) is replaced
            exc_info = sys.exc_info() if started else None
            start_response(response.status, list(response.headers.items()), exc_info)
            return [response.get_data()]
        finally:
            watchdog.end_call(thread_id)

    app.wsgi_app = bounded
    return app
