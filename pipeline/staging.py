"""The load's working tables on one shard's connection (sql/load/staging.sql): made once a
connection, emptied by every commit, and emptied by hand only after a file that put rows in
them was rolled back.

Made in every file's transaction, as they once were, the five tables and their view cost
each shard some 11 ms a file in catalog rows written and removed: a third of a small file's
time (bench/many_files.py).
"""

from __future__ import annotations

from typing import Any

import psycopg

from pipeline.queries import LOAD


class Staging:
    """Whether one connection's tables are empty as a file begins."""

    def __init__(self) -> None:
        self._used = False  # the current file's transaction put rows in them
        self._dirty = False  # a file rolled back with rows in them: left as dead rows

    def make(self, conn: psycopg.Connection[Any]) -> None:
        """Create the tables on a new connection, in its first transaction (the caller
        commits)."""
        conn.execute(LOAD.staging)
        self._used = self._dirty = False

    def ready(self, conn: psycopg.Connection[Any]) -> None:
        """Before a file's transaction: empty what a rolled-back file left, in a transaction
        of its own (a rollback of the file's would bring the rows back)."""
        if self._dirty:
            # Never inside a file's transaction: the commit would commit the file.
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            conn.execute(LOAD.staging_empty)
            conn.commit()
            self._dirty = False
        self._used = False

    def filled(self, copied: bool) -> None:
        """Note whether the file has copied rows into the tables (ShardRows.copied)."""
        self._used = self._used or copied

    def rolled_back(self) -> None:
        """The file's transaction was rolled back (a commit empties the tables itself)."""
        self._dirty = self._dirty or self._used
        self._used = False
