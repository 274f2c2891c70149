"""Stopping a running load from a signal handler or another thread (`Interrupt`): the
statements the shards run are cancelled, what has not committed rolls back, and the
result says exactly what committed."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from pipeline.writer import ShardWriter


class Interrupt:
    """Asks a running load to stop, from a signal handler or another thread: call it with the
    reason. A thread of the load's own then cancels what the shards are running (a signal
    handler must not block, nor start a thread: it may run while the main thread holds
    threading's own locks), and the load rolls back what has not committed."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._wake = threading.Event()

    def __call__(self, reason: str) -> None:
        if self.reason is None:  # a second signal changes nothing
            self.reason = reason
            self._wake.set()

    def stop(self, reason: str) -> None:
        """The load stops by itself (pipeline.load: a file it cannot write, memory run out):
        as an interrupt, but with nothing to cancel (its main thread rolls the file back)."""
        if self.reason is None:
            self.reason = reason

    def cancel_when_asked(self, writers: Iterable[ShardWriter], done: threading.Event) -> None:
        self._wake.wait()
        if self.reason is not None and not done.is_set():
            for writer in writers:
                writer.interrupt(self.reason)


class Interrupted(Exception):
    """Raised inside a file's streaming when the load is interrupted."""

    def __init__(self, rejected: int) -> None:
        self.rejected = rejected  # records rejected (and written) before the interruption
