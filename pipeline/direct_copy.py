"""The COPY of a file's new rows straight into one shard's `residents` (sql/load/copy_direct.sql),
for pipeline.shard_rows: in COPY's binary format (pipeline.binary_rows), each batch encoded
and queued in a thread of its own while the load's main thread reads and checks the next.

Both halves are needed for the gain (1M rows into empty shards, 5 interleaved rounds each):
rows in binary ask the servers 16% less CPU, but encoded on the main thread they took as long
as pyarrow's CSV writer did (4.41 s against 4.44 s); CSV in the thread changed nothing (5.17
s against 5.12 s); binary in the thread: 4.14 -> 3.58 s (and 5.12 -> 4.77 s, 5.48 -> 4.80 s
in slower hours).

The thread writes the rows to the server itself (psycopg's plain writer): a queue and a
thread of psycopg's behind it added a thread a file, and a handover a buffer, for nothing
the encoder's own thread does not give (a run of 10-row files: 2.5 ms a file of the thread
starts). The thread is the caller's pool's when it gives one (pipeline.writer: one a shard
for the run), else one of its own.

One batch is encoded while the caller works on the next, no more: `write` queues its batch,
then waits for the one before. An error of a batch (a connection lost; the server's unique
violation comes when the COPY ends) is raised by the next `write` or by `finish`; `abandon`
waits for the batch in flight, then ends the COPY with an error.

Only the caller's thread waits under the shard's watchdog (pipeline.watchdog), which keeps
one thread's nested waits: the encoder's thread queues the rows unwatched, and when the
server stops taking them, the caller's wait for that batch is the one the watchdog ends.
"""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
import pyarrow as pa

from pipeline import binary_rows, threads
from pipeline.copyin import PlainWriter
from pipeline.queries import LOAD
from pipeline.watchdog import Watchdog


class DirectCopy:
    """New rows (the columns of validate.OUTPUT) into `residents`, each with the load's id
    and source. Opened at the first `write`; `finish` or `abandon` ends it."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        watchdog: Watchdog,
        load_id: str,
        source: str | None,
        encoder: ThreadPoolExecutor | None = None,
    ) -> None:
        self._conn = conn
        self._watchdog = watchdog
        # The load's id and its source end every row: the same two fields each time.
        self._constant = binary_rows.fields(uuid.UUID(load_id), source)
        self._stack: contextlib.ExitStack | None = None
        self._copy: Any = None
        self._given = encoder  # a thread the caller keeps; else one made here, ended by finish
        self._encoder: ThreadPoolExecutor | None = None
        self._sending: Future[None] | None = None

    def write(self, rows: pa.Table) -> None:
        """Queue a batch's rows; raises the error of the batch before, if it met one."""
        if self._stack is None:
            self._open()
        assert self._encoder is not None
        # Queued behind the batch in flight, then that one waited for: the thread goes from
        # one to the next at once. The last one submitted ends after all the others.
        previous, self._sending = self._sending, self._encoder.submit(self._send, rows)
        if previous is not None:
            with self._watchdog.waiting(self._conn):
                threads.result(previous)

    def finish(self) -> None:
        """Send the last batch and end the COPY: the server checks the rows then (a unique
        violation is raised here, as psycopg raises it)."""
        self._sent()
        stack, copy, self._stack, self._copy = self._stack, self._copy, None, None
        if stack is not None:
            with stack:  # its COPY ends as the block does, with the trailer sent or not
                copy.write(binary_rows.TRAILER)

    def abandon(self) -> None:
        """End a COPY still open with an error: the server drops what it got."""
        with contextlib.suppress(Exception):
            self._sent()
        stack, self._stack, self._copy = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception), self._watchdog.waiting(self._conn):
                stack.__exit__(RuntimeError, RuntimeError("load abandoned"), None)

    def _open(self) -> None:
        cursor = self._conn.cursor()
        self._stack = contextlib.ExitStack()
        # Written to by the encoder's thread, unwatched: the caller's wait for it is watched.
        writer = PlainWriter(cursor)
        self._copy = self._stack.enter_context(cursor.copy(LOAD.copy_direct, writer=writer))
        self._copy.write(binary_rows.HEADER)
        self._encoder = self._given or threads.pool(1, "direct-copy")

    def _send(self, rows: pa.Table) -> None:
        # In the encoder's thread, which blocks when the server falls behind.
        self._copy.write(binary_rows.encode(rows, self._constant, constant_fields=2))

    def _sent_one(self) -> None:
        """Wait for the batch in flight under the watchdog, raising its error. Interrupted,
        it stays in flight: `abandon` waits for it again before it ends the COPY."""
        assert self._sending is not None
        try:
            with self._watchdog.waiting(self._conn):
                threads.result(self._sending)
        finally:
            if self._sending.done():
                self._sending = None

    def _sent(self) -> None:
        """Wait for the batch in flight (raising its error), and end the thread."""
        try:
            if self._sending is not None:
                self._sent_one()
        finally:
            if self._sending is None and self._encoder is not None:
                if self._encoder is not self._given:
                    self._encoder.shutdown(wait=True)  # idle: nothing is in flight now
                self._encoder = None
