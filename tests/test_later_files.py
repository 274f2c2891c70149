"""pipeline.later_files: which of a run's later files a shard's ledger holds, asked whole at
the run's first file and then only for the ledger rows written since."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from pipeline.later_files import NOTHING_PROTECTED, LaterFiles
from tests.conftest import Connect

A, B, C = ("a" * 64, "b" * 64, "c" * 64)


def _ledger_row(conn: psycopg.Connection[Any], sha256: str) -> tuple[uuid.UUID, Any]:
    """A file of another load, committed now: its ledger row (its load and finished_at)."""
    load_id = uuid.uuid4()
    row = conn.execute(
        "INSERT INTO load_ledger (load_id, source_file, source_sha256, started_at)"
        " VALUES (%s, 'other.csv', %s, now()) RETURNING finished_at",
        [load_id, sha256],
    ).fetchone()
    assert row is not None
    return load_id, row[0]


def test_a_later_file_in_the_ledger_is_found_at_the_first_file_and_when_written_later(
    initialised: None, connect: Connect
) -> None:
    with connect("default") as other, connect("default") as conn:
        held_before = _ledger_row(other, C)  # in the ledger before the run
        later_files = LaterFiles()
        # The run's first file, A: of its later files B and C, the ledger holds C.
        assert later_files.protected(conn, A, [B, C]) == {
            "kept_load": [held_before[0]], "kept_after": [None], "kept_until": [held_before[1]],
        }  # fmt: skip
        # B, loaded by another run meanwhile, is found at the next file's start too.
        held_since = _ledger_row(other, B)
        assert later_files.protected(conn, A, [B]) == {
            "kept_load": [held_since[0]], "kept_after": [None], "kept_until": [held_since[1]],
        }  # fmt: skip
        # A run's last file has no later one; a file the ledger does not hold protects none.
        assert later_files.protected(conn, C, []) == NOTHING_PROTECTED
        assert LaterFiles().protected(conn, A, ["d" * 64]) == NOTHING_PROTECTED
