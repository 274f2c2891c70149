"""`pipeline.copyout`: COPY output read from libpq, and later shards read ahead in threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pipeline.config import ShardMap, load_shard_map
from pipeline.copyout import CHUNK, CLOSE_WAIT, Chunk, CopyOut, ReadAhead, Stop
from pipeline.db import snapshot
from pipeline.errors import ShardError


@pytest.fixture
def shard_map(initialised: None, config_file: Path) -> ShardMap:
    return load_shard_map(config_file)


def copy_of(shard_map: ShardMap, statement: str, stop: Stop | None = None) -> Iterator[Chunk]:
    with snapshot(shard_map, shard_map.shards[0]) as conn:
        yield from CopyOut(conn, sql.SQL(statement), stop)


def running(shard_map: ShardMap, statement_start: str) -> int:
    """How many of the shard's sessions are running a statement that starts so."""
    with snapshot(shard_map, shard_map.shards[0]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s",
            [statement_start + "%"],
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_copy_waiting_for_the_server_lets_other_threads_run(shard_map: ShardMap) -> None:
    # libpq's blocking calls keep Python's lock: a reader waiting in them would stop the
    # threads that read the other shards ahead. Waiting in select() must not.
    go, finished = threading.Event(), []

    def busy() -> None:
        go.wait()
        for _ in range(2_000_000):  # Python code, tens of milliseconds: it needs the lock
            pass
        finished.append(time.monotonic())

    thread = threading.Thread(target=busy)
    thread.start()
    with snapshot(shard_map, shard_map.shards[0]) as conn:
        copy = CopyOut(conn, sql.SQL("COPY (SELECT pg_sleep(1)) TO STDOUT"))
        go.set()  # the thread can only run while this one waits for the server
        rows = list(copy)
        copy_done = time.monotonic()
    thread.join()
    assert rows == [b"\n"]
    # The server sleeps a second; the thread's loop takes a few hundredths of one. Waiting in
    # libpq, it could only run once the COPY was over.
    assert finished[0] < copy_done - 0.5


def test_sent_is_called_once_the_query_is_out_before_any_row(shard_map: ShardMap) -> None:
    # extract starts its imports in `sent`: the server must be working on the query by then.
    calls: list[int] = []
    with snapshot(shard_map, shard_map.shards[0]) as conn:

        def sent() -> None:
            calls.append(running(shard_map, "COPY (SELECT pg_sleep"))

        copy = CopyOut(conn, sql.SQL("COPY (SELECT pg_sleep(0.5), 1) TO STDOUT"), sent=sent)
        chunks = iter(copy)
        assert calls == []  # nothing is sent before the first chunk is asked for
        assert b"".join(chunks) == b"\t1\n"
        failing = CopyOut(conn, sql.SQL("COPY (SELECT 1 / 0) TO STDOUT"), sent=sent)
        with pytest.raises(psycopg.errors.DivisionByZero):
            list(failing)
    # Once a query: the sleeping one was running when `sent` looked; the failing one had gone
    # out too (it may have failed by then).
    assert len(calls) == 2 and calls[0] == 1


def test_chunks_are_whole_rows_and_stay_as_they_were_handed_on(shard_map: ShardMap) -> None:
    # CopyOut hands on its own buffer, not a copy: one it handed on must never change after.
    statement = "COPY (SELECT i, repeat('x', 500) FROM generate_series(1, 5000) AS i) TO STDOUT"
    chunks = list(copy_of(shard_map, statement))  # every chunk held at once
    assert len(chunks) >= 2
    assert all(c.endswith(b"\n") for c in chunks)
    assert all(len(c) >= CHUNK for c in chunks[:-1])
    assert b"".join(chunks) == b"".join(b"%d\t%s\n" % (i, b"x" * 500) for i in range(1, 5001))


def test_read_ahead_replays_every_chunk_in_order(shard_map: ShardMap, tmp_path: Path) -> None:
    statement = "COPY (SELECT i, repeat('x', 500) FROM generate_series(1, 20000) AS i) TO STDOUT"
    spool = ReadAhead(lambda stop: copy_of(shard_map, statement, stop), str(tmp_path))
    try:
        data = b"".join(spool)
    finally:
        spool.close()
    assert len(data) > 8 << 20  # twice the in-memory part: the spool went through a file
    assert [int(line.split(b"\t")[0]) for line in data.splitlines()] == list(range(1, 20001))


def test_read_ahead_hands_its_error_to_the_reader(shard_map: ShardMap) -> None:
    failing = "COPY (SELECT 1 / (3 - i) FROM generate_series(1, 5) AS i) TO STDOUT"
    spool = ReadAhead(lambda stop: copy_of(shard_map, failing, stop), None)
    try:
        with pytest.raises(ShardError, match="shard default: division by zero"):
            list(spool)
    finally:
        spool.close()


def test_closing_a_read_ahead_stops_its_copy(shard_map: ShardMap) -> None:
    endless = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 100000000)) TO STDOUT"
    spool = ReadAhead(lambda stop: copy_of(shard_map, endless, stop), None)
    time.sleep(0.2)  # let it start
    began = time.monotonic()
    spool.close()  # returns: the COPY was cancelled, not read to its end
    assert time.monotonic() - began < CLOSE_WAIT + 0.5
    # The cancel is on its way; the server ends the query once the rows already sent are
    # drained (on a loaded machine, a moment after close returns). Read to its end, this
    # query would run for minutes.
    while running(shard_map, "COPY (SELECT repeat"):
        assert time.monotonic() - began < 10
        time.sleep(0.05)


@pytest.mark.parametrize("started", [False, True], ids=["before-the-first-row", "mid-copy"])
def test_closing_a_read_ahead_of_a_slow_query_cancels_it_within_a_second(
    shard_map: ShardMap, started: bool
) -> None:
    # The server sends nothing for 30 s: a close that waited for the next chunk would wait
    # that long. It must cancel the query and return at once, and leave nothing running.
    slow = (
        "COPY (SELECT i, CASE WHEN i = 2 THEN pg_sleep(30) END"
        " FROM generate_series(1, 2) AS i) TO STDOUT"
        if started
        else "COPY (SELECT pg_sleep(30)) TO STDOUT"
    )
    spool = ReadAhead(lambda stop: copy_of(shard_map, slow, stop), None)
    deadline = time.monotonic() + 10
    while running(shard_map, "COPY (SELECT") == 0:  # the server is in pg_sleep
        assert time.monotonic() < deadline
        time.sleep(0.05)
    began = time.monotonic()
    spool.close()
    assert time.monotonic() - began < CLOSE_WAIT
    assert running(shard_map, "COPY (SELECT") == 0  # cancelled on the server, not left


def test_a_block_left_with_a_query_running_drops_its_connection_quietly(
    shard_map: ShardMap, caplog: pytest.LogCaptureFixture
) -> None:
    # An interrupt that lands between a query's send and its result leaves the block with
    # the connection busy: a rollback sent into it fails ("another command is already in
    # progress") and psycopg prints that to stderr. The query is cancelled instead, and the
    # connection closed; the interrupt goes on as it was.
    caplog.set_level(logging.WARNING, logger="psycopg")
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), snapshot(shard_map, shard_map.shards[0]) as conn:
        conn.pgconn.send_query(b"SELECT pg_sleep(30)")
        while running(shard_map, "SELECT pg_sleep(30)") == 0:
            assert time.monotonic() - began < 10
            time.sleep(0.05)
        raise KeyboardInterrupt
    assert conn.closed
    assert [r.getMessage() for r in caplog.records] == []
    while running(shard_map, "SELECT pg_sleep(30)"):  # cancelled, not left to sleep
        assert time.monotonic() - began < 10
        time.sleep(0.05)


def test_an_interrupt_between_the_copys_send_and_its_result_is_quiet(
    shard_map: ShardMap, caplog: pytest.LogCaptureFixture
) -> None:
    # `sent` runs just after the COPY went out, before its result: an interrupt there
    # cancels the COPY and leaves no query for a rollback to run into. (psycopg's own
    # `transaction()`, interrupted so around its BEGIN, rolled back into the busy
    # connection and printed that to stderr: CopyOut no longer uses it.)
    caplog.set_level(logging.WARNING, logger="psycopg")

    def interrupted() -> None:
        raise KeyboardInterrupt

    statement = sql.SQL("COPY (SELECT pg_sleep(30)) TO STDOUT")
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), snapshot(shard_map, shard_map.shards[0]) as conn:
        list(CopyOut(conn, statement, sent=interrupted))
    assert [r.getMessage() for r in caplog.records] == []
    assert time.monotonic() - began < 10  # cancelled, not slept through
    assert running(shard_map, "COPY (SELECT pg_sleep(30))") == 0


def test_a_copy_stopped_in_an_autocommit_block_leaves_the_block_usable(
    shard_map: ShardMap, shard_dsns: dict[str, str]
) -> None:
    # As rebalance reads its source: autocommit, inside `transaction()`. A COPY stopped
    # early rolls back to its own savepoint; what the block did before it stays.
    many = sql.SQL("COPY (SELECT repeat('x', 1000) FROM generate_series(1, 20000)) TO STDOUT")
    with psycopg.connect(shard_dsns["default"], autocommit=True) as conn:
        with conn.transaction():
            conn.execute("CREATE TEMPORARY TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (1)")
            chunks = iter(CopyOut(conn, many))
            assert len(next(chunks)) >= CHUNK
            chunks.close()  # stopped with the COPY still running on the server
            assert conn.execute("SELECT n FROM kept").fetchall() == [(1,)]
        # A connection whose COPY has not been read to its end is busy: another is refused
        # (its failure would cancel the first one's query), and the first reads on.
        first = CopyOut(conn, many)
        reading = iter(first)
        begun = next(reading)
        with pytest.raises(psycopg.ProgrammingError, match="not ACTIVE"):
            next(iter(CopyOut(conn, sql.SQL("COPY (SELECT 1) TO STDOUT"))))
        assert (begun + b"".join(reading)).count(b"\n") == first.rows == 20000
