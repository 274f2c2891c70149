"""A shard's statement time-out, enforced by the client: for servers that stop answering.

A frozen host or a SIGSTOPped postmaster cannot enforce its own statement_timeout, and
libpq would wait for it forever, holding the load's transactions and locks on the other
shards. Every wait of the load for a shard runs inside `Watchdog.waiting`; past the wait's
deadline a thread of the watchdog's own cancels the statement, and drops the connection
(shuts its socket down, which wakes the waiting thread with an error) when even the cancel
does not end the wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from pipeline import threads

CANCEL_TIMEOUT_SECONDS = 5  # for a server to take a cancel request
WATCH_TICK_SECONDS = 0.2  # how often the watchdog looks at the time


class Watchdog:
    """The statement time-out of one shard, enforced by the client. A server that stops
    answering (a frozen host, a SIGSTOPped postmaster) cannot enforce its own
    statement_timeout, and libpq would wait forever for it, holding the load's transactions
    on the other shards. Every wait for the server runs inside `waiting`; past its deadline a
    thread of the watchdog's own cancels the statement, and drops the connection (shuts its
    socket down, which wakes the waiting thread with an error) when even the cancel does not
    end the wait."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._wait: _Wait | None = None
        self._next_id = 0
        self._fired: tuple[int, str] | None = None  # (wait id, why the watchdog ended it)
        self._hurried = False  # the load is interrupted: no wait takes long
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def waiting(
        self,
        conn: psycopg.Connection[Any],
        seconds: float | None = None,
        option: str = "--statement-timeout",
    ) -> Iterator[None]:
        """A wait for the server of at most `seconds` (default: the statement time-out; 0:
        no limit; `option` sets it). Nested waits each keep their own deadline."""
        seconds = self.seconds if seconds is None else seconds
        with self._lock:
            if self._hurried:
                seconds = min(seconds or CANCEL_TIMEOUT_SECONDS, CANCEL_TIMEOUT_SECONDS)
            outer = self._wait
            self._next_id += 1
            wait_id = self._next_id
            self._wait = None
            if seconds:
                self._wait = _Wait(wait_id, time.monotonic() + seconds, seconds, option, conn)
                self._start()
        ended = False
        try:
            yield
            ended = True
        finally:
            with self._lock:
                self._wait = outer
                if ended and self._fired is not None and self._fired[0] == wait_id:
                    self._fired = None  # it answered before the cancel took: not a time-out

    def hurry(self) -> None:
        """The load is interrupted, and the statement cancelled (ShardWriter.interrupt): the
        current wait and every later one (the rollback) get CANCEL_TIMEOUT_SECONDS at most,
        then the connection is dropped."""
        with self._lock:
            self._hurried = True
            self._start()
            if self._wait is not None:
                until = min(self._wait.until, time.monotonic() + CANCEL_TIMEOUT_SECONDS)
                self._wait = dataclasses.replace(self._wait, until=until)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threads.start(self._run, name="watchdog")

    def take(self) -> str | None:
        """Why the watchdog ended the last wait, once; None if it did not."""
        with self._lock:
            fired, self._fired = self._fired, None
        return fired[1] if fired else None

    def close(self) -> None:
        self._closed.set()

    def _run(self) -> None:
        while not self._closed.wait(WATCH_TICK_SECONDS):
            with self._lock:
                wait = self._wait
            if wait is not None and time.monotonic() >= wait.until:
                self._expire(wait)

    def _expire(self, wait: _Wait) -> None:
        grace = min(CANCEL_TIMEOUT_SECONDS, wait.seconds)
        told = (
            f"no answer within {wait.seconds:g} s ({wait.option}; raise it for a shard that "
            "is only slow)"
        )
        with self._lock:
            self._fired = (wait.id, f"{told}: the statement was cancelled")
        # A cancel the server answered ends the statement soon; one it did not (a frozen
        # server) leaves the connection to drop. Once hurried, the interrupt has cancelled.
        answered = not self._hurried and cancel(wait.conn, grace)
        deadline = time.monotonic() + (grace if answered else 0)
        while time.monotonic() < deadline:
            with self._lock:
                if self._wait is None or self._wait.id != wait.id:
                    return  # the cancel ended the wait
            time.sleep(WATCH_TICK_SECONDS / 4)
        with self._lock:
            if self._wait is None or self._wait.id != wait.id:
                return
            self._fired = (wait.id, f"{told}, nor to a cancel: the connection was dropped")
            self._wait = None  # acted on: not again
        _shut_down(wait.conn)


@dataclass(frozen=True)
class _Wait:
    """One wait for a shard's server, as the watchdog sees it."""

    id: int
    until: float  # time.monotonic() deadline
    seconds: float
    option: str  # the option that sets `seconds`, for the message
    conn: psycopg.Connection[Any]


def cancel(conn: psycopg.Connection[Any], timeout: float) -> bool:
    """Ask the server to cancel what `conn` runs, waiting for it at most `timeout` seconds
    (a frozen server never answers); whether the server took the request."""
    cancel_safe = getattr(conn, "cancel_safe", None)  # psycopg 3.2+, with a time-out
    if cancel_safe is not None:
        try:
            cancel_safe(timeout=timeout)
        except Exception:
            return False
        return True
    answered = threading.Event()

    def cancel() -> None:
        with contextlib.suppress(Exception):
            conn.cancel()  # psycopg 3.1: no time-out of its own
            answered.set()

    threads.start(cancel, name="cancel")
    return answered.wait(timeout)


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down under libpq: whatever waits on it wakes with an
    error ("server closed the connection"), and the connection is then closed as broken."""
    with contextlib.suppress(Exception):
        fd = conn.pgconn.socket
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
