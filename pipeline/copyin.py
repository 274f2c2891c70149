"""COPY into a shard: psycopg's queued writer (a worker thread sends the rows while the main
thread parses), with a short queue and every wait for the server under the shard's watchdog
(`pipeline.watchdog`); and psycopg's plain writer for a COPY already fed from a thread of its
own (pipeline.direct_copy). Both end an abandoned COPY quietly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.copy import LibpqWriter, QueuedLibpqWriter

from pipeline.watchdog import Watchdog

COPY_QUEUE = 16  # buffers of 32-128 KB waiting for a shard's COPY


class QueuedWriter(QueuedLibpqWriter):
    """psycopg's queued COPY writer with a short queue. psycopg's holds up to 1,024 buffers
    a shard: when a server falls behind the parser it fills, and a 10M-row load peaked at
    82 MB against 44 MB at 1M. With COPY_QUEUE buffers it loads as fast and peaks at 46 MB
    (measured, with writer.REJECTS_BATCH). The queue is psycopg's own attribute, replaced by one of
    its own kind: tests/test_load.py fails if psycopg stops using it."""

    def __init__(self, cursor: psycopg.Cursor[Any], watchdog: Watchdog | None = None) -> None:
        super().__init__(cursor)
        self._queue = type(self._queue)(maxsize=COPY_QUEUE)  # psycopg's kind, a shorter one
        self._watchdog = watchdog

    def write(self, data: Buffer) -> None:
        # Blocks once the queue is full: when the server stops taking rows.
        if self._watchdog is None:
            super().write(data)
            return
        with self._watchdog.waiting(self.connection):
            super().write(data)

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is None:
            if self._watchdog is None:
                super().finish()
                return
            with self._watchdog.waiting(self.connection):  # the server's answer to the COPY
                super().finish()
            return
        _end_abandoned(super().finish, exc)


class PlainWriter(LibpqWriter):
    """psycopg's own writer: the calling thread sends the rows."""

    def finish(self, exc: BaseException | None = None) -> None:
        if exc is None:
            super().finish()
            return
        _end_abandoned(super().finish, exc)


def _end_abandoned(finish: Callable[[BaseException | None], None], exc: BaseException) -> None:
    # Abandoning the file (writer.ShardWriter._abandon): the load already reports why. An error
    # ending the COPY of a dead connection would only be logged by psycopg beside it
    # ("error ignored terminating <psycopg.Copy [BAD]>"); the rollback then closes it.
    with contextlib.suppress(psycopg.Error):
        finish(exc)
