"""The server's own settings, as a role or a database may set them. Its time-outs
(statement_timeout, idle_in_transaction_session_timeout, transaction_timeout) do not end the
tool's sessions part-way (pipeline.db.open_connection, sql/db/server_timeout.sql); those the
connection's own options set do, and lock_timeout is left as it is. Its date style and time
zone change nothing the tool reads or writes (sql/db/date_style.sql)."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from click.testing import Result
from psycopg import sql

from bench.generate import write_csv
from pipeline.db import SERVER_TIMEOUTS, open_connection, options_set
from tests.conftest import RunCli, shard_map_yaml, write_map


def _set_on_database(dsn: str, settings: dict[str, str]) -> None:
    """ALTER DATABASE ... SET: every new session of the database starts with `settings`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        database = sql.Identifier(conn.info.dbname)
        for name, value in settings.items():
            if conn.execute("SELECT current_setting(%s, true)", [name]).fetchone() == (None,):
                continue  # transaction_timeout: PostgreSQL 17 and later
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                    database, sql.Identifier(name), sql.Literal(value)
                )
            )


def _load_with_default_options(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path, setting: str
) -> Result:
    """A load of 20,000 records whose default shard's DSN sets `setting` in its options."""
    dsns = dict(shard_dsns)
    dsns["default"] += f" options='-c {setting}'"
    config = write_map(tmp_path / "own", shard_map_yaml(dsns))
    data = tmp_path / "residents.csv"
    write_csv(data, 20_000, seed=7)
    return run_cli("load", str(data), config=config)


def _shown(conn: psycopg.Connection, name: str) -> str | None:
    row = conn.execute("SELECT current_setting(%s, true)", [name]).fetchone()
    return None if row is None else row[0]


# Time-outs no statement or transaction of the tool's fits in: a millisecond to idle in a
# transaction, a tenth of a second for a statement or a transaction (each COPY into
# residents takes longer: SLOW_INSERTS). And a millisecond's wait for a lock, which the tool
# keeps: nothing here waits for one.
SHORT = {
    "statement_timeout": "100ms",
    "idle_in_transaction_session_timeout": "1ms",
    "lock_timeout": "1ms",
    "transaction_timeout": "100ms",
}
SLOW_INSERTS = """
CREATE FUNCTION slow_inserts() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN PERFORM pg_sleep(0.2); RETURN NULL; END$$;
CREATE TRIGGER slow_inserts AFTER INSERT ON residents
  FOR EACH STATEMENT EXECUTE FUNCTION slow_inserts()
"""


def test_a_databases_own_timeouts_do_not_end_a_load_an_extract_or_a_check(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    for dsn in shard_dsns.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SLOW_INSERTS)
        _set_on_database(dsn, SHORT)
    data = tmp_path / "residents.csv"
    write_csv(data, 20_000, seed=7)

    loaded = run_cli("load", "--json", str(data))
    assert loaded.exit_code == 0, loaded.output
    for dsn in shard_dsns.values():
        with open_connection(dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER slow_inserts ON residents; DROP FUNCTION slow_inserts()")
    out = tmp_path / "all.parquet"
    extracted = run_cli("extract", "-o", str(out))
    assert extracted.exit_code == 0, extracted.output
    summary = json.loads(loaded.stdout)
    assert summary["rows_read"] == 20_000
    assert summary["rows_loaded"] > 19_000  # the file's few invalid records are rejected
    assert summary["rows_loaded"] + summary["rows_rejected"] == 20_000
    assert pq.read_table(out).num_rows == summary["rows_loaded"]
    checked = run_cli("check")
    assert checked.exit_code == 0, checked.output


def test_the_timeouts_a_dsns_options_or_pgoptions_set_are_kept(
    shard_dsns: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn = shard_dsns["default"]
    _set_on_database(dsn, SHORT)
    turned_off = ["statement_timeout", "idle_in_transaction_session_timeout"]
    with open_connection(dsn) as conn:
        assert [_shown(conn, name) for name in turned_off] == ["0", "0"]
        assert _shown(conn, "transaction_timeout") in (None, "0")  # None before PostgreSQL 17
        assert _shown(conn, "lock_timeout") == "1ms"
    # The option without a space after -c, as PostgreSQL takes it too.
    with open_connection(f"{dsn} options='-cstatement_timeout=7s'") as conn:
        assert _shown(conn, "statement_timeout") == "7s"
        assert _shown(conn, "idle_in_transaction_session_timeout") == "0"
    monkeypatch.setenv("PGOPTIONS", "--idle-in-transaction-session-timeout=3s")
    with open_connection(dsn, autocommit=False) as conn:
        assert _shown(conn, "idle_in_transaction_session_timeout") == "3s"
        assert _shown(conn, "statement_timeout") == "0"
        assert not conn.autocommit


def test_a_map_whose_shard_sets_a_statement_timeout_in_its_dsn_keeps_it(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The user's own limit wins, and ends the load's COPY as the user asked.
    result = _load_with_default_options(run_cli, shard_dsns, tmp_path, "statement_timeout=1ms")
    assert result.exit_code == 1, result.output
    assert "canceling statement due to statement timeout" in result.output


def test_a_shard_that_ends_an_idle_session_is_a_clean_error(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The user's own idle limit on the default shard, kept: its transactions idle while the
    # other shard answers or the next batch is read, and the server ends the session,
    # mostly during the preflight, whose rollback (releasing its locks) then fails too:
    # an error line, however it ends, not a traceback (run_cli lets exceptions through).
    result = _load_with_default_options(
        run_cli, shard_dsns, tmp_path, "idle_in_transaction_session_timeout=1ms"
    )
    assert result.exit_code in (1, 2), result.output
    assert "Error: shard default:" in result.output


IDLE = "idle_in_transaction_session_timeout"


@pytest.mark.parametrize(
    ("options", "names"),
    [
        ("-c statement_timeout=5s", {"statement_timeout"}),
        ("-cstatement_timeout=5s", {"statement_timeout"}),
        ("--statement-timeout=5s -c geqo=off", {"statement_timeout", "geqo"}),
        ("-c deadlock_timeout=1s -c x.lock_timeout=2", {"deadlock_timeout", "x.lock_timeout"}),
        (rf"-c search_path=a\ b  -c {IDLE}=0", {"search_path", IDLE}),
        ("", set()),
        ("-c", set()),
    ],
)
def test_the_settings_libpq_options_set_are_read_word_by_word(
    options: str, names: set[str]
) -> None:
    assert options_set(options) == names


def test_every_timeout_the_connection_sets_itself_is_kept(
    shard_dsns: dict[str, str],
) -> None:
    dsn = shard_dsns["default"]
    _set_on_database(dsn, SHORT)
    with psycopg.connect(dsn) as conn:  # a server refuses a setting it does not have
        version = conn.info.server_version
    names = [name for name, since in SERVER_TIMEOUTS.items() if version >= since]
    given = " ".join(f"-c {name}=7s" for name in names)
    with open_connection(f"{dsn} options='{given}'") as conn:
        assert _shown(conn, "statement_timeout") == "7s"
        assert _shown(conn, "idle_in_transaction_session_timeout") == "7s"


# A date style psycopg cannot read (it reads ISO only), a time zone off the hour, and an
# interval style of the SQL standard's, as a database may set them for its own users.
FOREIGN_DATES = {
    "DateStyle": "SQL, DMY",
    "TimeZone": "Asia/Kathmandu",
    "IntervalStyle": "sql_standard",
}


def test_a_databases_own_date_style_and_time_zone_change_nothing_the_tool_reads_or_writes(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "residents.csv"
    write_csv(data, 200, seed=3)
    plain = run_cli("load", str(data))
    assert plain.exit_code == 0, plain.output
    before = run_cli("extract", "--with-provenance", "-o", str(tmp_path / "before.csv"))
    assert before.exit_code == 0, before.output
    for dsn in shard_dsns.values():
        _set_on_database(dsn, FOREIGN_DATES)
    with psycopg.connect(shard_dsns["default"]) as conn:  # the settings are in force
        assert _shown(conn, "DateStyle") == "SQL, DMY"

    status = run_cli("status")
    assert status.exit_code == 0, status.output
    assert "last load 20" in status.output  # a date read from the ledger, ISO
    reloaded = run_cli("load", "--force", str(data))
    assert reloaded.exit_code == 0, reloaded.output
    assert "0 inserted, 0 updated" in reloaded.output
    after = run_cli("extract", "--with-provenance", "-o", str(tmp_path / "after.csv"))
    assert after.exit_code == 0, after.output
    # The same export, load times included (UTC, ISO), byte for byte.
    assert (tmp_path / "after.csv").read_bytes() == (tmp_path / "before.csv").read_bytes()
    for command in (("check",), ("report", "-o", str(tmp_path / "r.html")), ("plan",)):
        result = run_cli(*command)
        assert result.exit_code == 0, (command, result.output)
