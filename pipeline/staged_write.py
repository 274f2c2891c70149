"""A file's staged rows written on its shard, in the file's transaction (the last step of
pipeline.writer's `commit`): the rows later files of the command already wrote counted as
kept, the delete markers applied, then the changed rows updated and the new ones inserted,
or, for a dry run, counted as they would be."""

from __future__ import annotations

from typing import Any

import psycopg

from pipeline.load_result import ShardCounts
from pipeline.queries import LOAD


def write_staged(
    conn: psycopg.Connection[Any],
    counts: ShardCounts,
    params: dict[str, Any],
    deleting: bool,
    dry_run: bool,
    load_id: str,
) -> tuple[int, int]:
    """Write the staged rows, counting the kept and the delete markers (`deleting`: the file
    has some) into `counts`; `params`: the later files' rows (pipeline.later_files) and the
    source's. Returns (inserted, updated)."""
    conn.execute(LOAD.joins_by_id)  # each statement below finds rows by id
    if params["kept_load"]:
        # Counted before the upsert, which would move the rows it writes out of reach.
        counts.kept = scalar(conn.execute(LOAD.kept, params).fetchone())
    if deleting:
        _delete_marked(conn, counts, params)
    if dry_run:
        preview = conn.execute(LOAD.preview, params).fetchone()
        assert preview is not None
        row = (int(preview[0]), int(preview[1]) - counts.kept)
    else:
        row = _write_rows(conn, {"load_id": load_id, **params})
    conn.execute(LOAD.joins_any)
    return row


def _delete_marked(
    conn: psycopg.Connection[Any], counts: ShardCounts, params: dict[str, Any]
) -> None:
    """Apply the file's delete markers (sql/load/delete_marked.sql), and count them: a
    marker whose id the shard does not hold is `not_found`; one a later file of the run
    wrote is left alone, `unchanged` and `kept` as an upsert's row would be."""
    row = conn.execute(LOAD.delete_marked, params).fetchone()
    assert row is not None
    markers, deleted, later = (int(v) for v in row)
    counts.marked_deleted = deleted
    counts.deleted += deleted
    counts.not_found = markers - deleted - later
    counts.kept += later


def _write_rows(conn: psycopg.Connection[Any], params: dict[str, Any]) -> tuple[int, int]:
    """Write the file's valid rows: the changed ones updated, the new ones inserted.
    Returns (inserted, updated)."""
    conn.execute(LOAD.savepoint)
    try:
        updated = conn.execute(LOAD.update, params).rowcount
        inserted = conn.execute(LOAD.insert, {**params, "updated": updated}).rowcount
    except psycopg.errors.UniqueViolation:
        # Someone inserted one of these ids by hand after sql/load/update.sql looked (loads
        # cannot: they hold the lock). The one-statement upsert takes each row as it
        # finds it: such a row is updated, never duplicated, and the file still loads.
        conn.execute(LOAD.savepoint_undo)
        row = conn.execute(LOAD.upsert, params).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])
    return inserted, updated


def scalar(row: Any) -> int:
    """The first column of a row of one number, 0 for none."""
    return int(row[0]) if row else 0
