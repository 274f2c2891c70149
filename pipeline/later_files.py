"""What later files of a run have already written on a shard, which a file completed late
must leave as it is ("kept": sql/load/protected.sql, kept.sql).

A run loads its files in order, and the last file to write an id wins. A re-run that
completes an earlier file (one a shard failed the first time) must not overwrite the rows
a later file of the run already wrote in an earlier run. So each file asks, on each shard,
which of the run's later files the shard's ledger holds. Asking with every later file's
sha256 sent the whole list once a file: a run of 3,000 small files spent a fifth of its
time building those lists. So a shard is asked for the whole list once a run, then only for
the ledger rows written since (ledger_since.sql: the load lock orders them), and the rows a
later file wrote are looked up only for the later files it does hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from pipeline.queries import LOAD

NOTHING_PROTECTED: dict[str, list[Any]] = {"kept_load": [], "kept_after": [], "kept_until": []}


class LaterFiles:
    """One shard's view of a run's files in its ledger (one per shard and run)."""

    def __init__(self) -> None:
        self._held: set[str] = set()  # sha256 of the run's files the ledger holds
        self._mark: int | None = None  # the newest ledger row seen; None: not asked yet

    def ask(
        self, conn: psycopg.Connection[Any], later: Sequence[str]
    ) -> psycopg.Cursor[Any] | None:
        """Send the question `protected` answers (in the caller's pipeline: db.pipelined);
        give its cursor to `protected`, or drop it (nothing is learnt from it then)."""
        if not later:
            return None
        if self._mark is None:
            return conn.execute(LOAD.ledger_holds, {"later": later})
        return conn.execute(LOAD.ledger_since, {"mark": self._mark})

    def protected(
        self,
        conn: psycopg.Connection[Any],
        sha256: str,
        later: Sequence[str],
        asked: psycopg.Cursor[Any] | None = None,
    ) -> dict[str, list[Any]]:
        """The rows that later files of this run already wrote here, as the upsert's
        parameters: (load, loaded_at after, loaded_at until) for each such file. Asked in
        the file's transaction, holding the load lock."""
        if asked is None:
            asked = self.ask(conn, later)
        if asked is None:
            return NOTHING_PROTECTED
        row = asked.fetchone()
        if self._mark is None:
            mark, held = row if row is not None else (None, [])
            self._mark = 0 if mark is None else int(mark)
        else:
            mark, held = row if row is not None else (None, None)
            if mark is not None:
                self._mark = int(mark)
        self._held.update(held or ())
        holding = [h for h in later if h in self._held and h != sha256]
        if not holding:
            return NOTHING_PROTECTED
        found = conn.execute(LOAD.protected, {"later": holding}).fetchall()
        return {
            "kept_load": [r[0] for r in found],
            "kept_after": [r[1] for r in found],
            "kept_until": [r[2] for r in found],
        }
