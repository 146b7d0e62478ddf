"""Hard deadlines on blocking socket waits: past its deadline a socket is shut down.

A peer that stops answering but whose kernel still acknowledges packets (a frozen database, a
FHIR server that sends one byte at a time) is not caught by socket timeouts, which count from
the last byte. A `SocketDeadlines` watcher (one thread per process) shuts down, at its deadline,
each socket it was given: the blocked read returns at once, the caller gets an error, and the
thread is free again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Hashable

#: How often the watcher looks at the deadlines (the most a deadline can be overrun).
RESOLUTION_S = 0.05


class SocketDeadlines:
    """Deadlines for sockets, each under a key; `arm` sets or moves one, `disarm` drops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed: dict[Hashable, tuple[float, socket.socket]] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.expired = 0

    def arm(self, key: Hashable, sock: socket.socket, deadline: float) -> None:
        """Shut `sock` down at `deadline` (time.monotonic) unless disarmed first."""
        self._ensure_thread()
        with self._lock:
            self._armed[key] = (deadline, sock)
            self._wake.notify()

    def disarm(self, key: Hashable) -> None:
        with self._lock:
            self._armed.pop(key, None)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            self._pid = os.getpid()  # a forked worker starts its own watcher
            self._armed.clear()
            self._thread = threading.Thread(target=self._watch, name="deadlines", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for key, (deadline, sock) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        self.expired += 1
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                soonest = min((d for d, _ in self._armed.values()), default=now + 1.0)
                self._wake.wait(max(RESOLUTION_S, soonest - now))


#: The one watcher of this process.
DEADLINES = SocketDeadlines()
