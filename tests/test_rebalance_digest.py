"""The digest a move verifies its rows by (sql/rebalance/hash.sql): what it tells apart, that
two servers agree on it, and a move an earlier version copied (its md5 digest) finished."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.move import DIGEST_PREFIX, rows_hash
from pipeline.queries import REBALANCE
from tests.conftest import RunCli, Server, rows
from tests.test_rebalance import (  # noqa: F401  # fixtures, used by name
    _count,
    _init_new_map,
    _killed_between_copy_and_delete,
    id_map,
    indonesians_on_default,
)

ROWS: list[tuple[Any, ...]] = [
    (101, "ID", "Siti Rahayu", "Female", 31, "Jalan Sudirman 1"),
    (102, "ID", "Budi Santoso", None, None, None),
    (103, "ID", 'Dewi, "Lestari"', "", 27, "Jl. O'Brien\n2"),
    (104, "US", "Not Moved", "Male", 40, "Main St"),
]


def _digest(server: Server, rows: list[tuple[Any, ...]]) -> tuple[int, str]:
    """The digest of the Indonesians among `rows`, as a move's source computes it, on
    `server` (a temporary `residents` hides any other for the session)."""
    with psycopg.connect(server.admin_dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE residents (id bigint, country char(2), name text, gender text,"
            " age smallint, address text)"
        )
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO residents VALUES (%s, %s, %s, %s, %s, %s)", rows)
        return rows_hash(conn, REBALANCE.source_rows, {"country": "ID"})


def test_the_digest_counts_the_rows_and_tells_every_change_apart(
    pg_servers: list[Server],
) -> None:
    first = _digest(pg_servers[0], ROWS)
    assert first[0] == 3 and first[1].startswith(DIGEST_PREFIX)
    # Every server computes it alike (two servers here; two versions where PostgreSQL 15 is
    # installed beside the embedded one), and the rows' order does not matter.
    assert _digest(pg_servers[1], ROWS[::-1]) == first
    changed = [
        [(101, "ID", "Siti Rahayu", "Female", 32, "Jalan Sudirman 1"), *ROWS[1:]],
        [ROWS[0], (102, "ID", "Budi Santoso", "", None, None), *ROWS[2:]],  # '' is not NULL
        [ROWS[0], ROWS[1], (103, "ID", 'Dewi, "Lestari"', None, 27, "Jl. O'Brien\n2"), ROWS[3]],
        # the same contents under each other's ids
        [(102, *ROWS[0][1:]), (101, *ROWS[1][1:]), *ROWS[2:]],
        [*ROWS[:3], (105, "ID", "Agus Wijaya", None, None, None)],
    ]
    digests = {_digest(pg_servers[0], case) for case in changed}
    assert len(digests) == len(changed) and first not in digests
    assert _digest(pg_servers[0], ROWS[1:])[0] == 2


def test_a_move_an_earlier_version_copied_is_finished_by_its_own_digest(
    run_cli: RunCli,
    indonesians_on_default: None,  # noqa: F811
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Killed between its copy and its delete, a move recorded the md5 digest of earlier
    versions (sql/rebalance/hash_md5.sql) on the target: the re-run checks the source's rows
    against it, then deletes them."""
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _killed_between_copy_and_delete(config, dsns, tmp_path)
    with psycopg.connect(dsns["default"]) as source:
        old = rows_hash(source, REBALANCE.source_rows, {"country": "ID"}, like="0" * 32)
    assert old[0] == 3 and len(old[1]) == 32 and not old[1].startswith(DIGEST_PREFIX)
    with psycopg.connect(dsns["db_id"]) as target:
        updated = target.execute(
            "UPDATE rebalance_ledger SET rows_hash = %s WHERE step = 'copied'", [old[1]]
        )
        assert updated.rowcount == 1
    copied = rows(dsns["db_id"])

    result = run_cli("rebalance", config=config)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "moved ID  default -> db_id  3 rows (copied by an earlier run)"
    )
    assert rows(dsns["db_id"]) == copied
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 0
    with psycopg.connect(dsns["default"]) as source:
        recorded = source.execute("SELECT rows_hash FROM rebalance_ledger WHERE step = 'deleted'")
        assert recorded.fetchall() == [(old[1],)]


@pytest.mark.parametrize("digest", ["0" * 32, DIGEST_PREFIX + "0"], ids=["md5", "h64"])
def test_rows_that_do_not_hash_as_recorded_are_not_deleted_by_the_finish(
    pg_servers: list[Server], digest: str
) -> None:
    """`move.delete` deletes nothing when the source's rows do not give the digest the copy
    recorded, in either formula."""
    from pipeline.move import Copied, delete

    name = pg_servers[0].create_database()
    try:
        with psycopg.connect(pg_servers[0].dsn_for(name)) as conn:
            conn.execute(
                "CREATE TABLE residents (id bigint, country char(2), name text, gender text,"
                " age smallint, address text)"
            )
            conn.execute("CREATE TABLE rebalance_renumbered (id bigint)")
            with conn.cursor() as cursor:
                cursor.executemany("INSERT INTO residents VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
            conn.commit()
            done = delete(conn, "ID", ("default", "db_id"), Copied("m", 3, digest))
            assert done is None
            assert _count(pg_servers[0].dsn_for(name), "SELECT count(*) FROM residents") == 4
    finally:
        pg_servers[0].drop_database(name)
