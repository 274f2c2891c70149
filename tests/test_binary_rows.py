"""Rows in COPY's binary format (pipeline.binary_rows) and the direct COPY that sends them
(pipeline.direct_copy), read back from a real server: every kind of value the load sends,
NULL in each column that takes one, arrays that start inside their buffers, a stream cut
anywhere, batches past psycopg's buffer and more of them than are in flight at once."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest

from pipeline import binary_rows
from pipeline.direct_copy import DirectCopy
from pipeline.watchdog import Watchdog
from tests.conftest import Connect

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("country", pa.string()),
        ("name", pa.string()),
        ("gender", pa.string()),
        ("age", pa.int16()),
        ("address", pa.string()),
    ]
)
TABLE = """CREATE TEMP TABLE target (
    id bigint, country char(2), name text, gender text, age smallint, address text,
    load_id uuid, source text)"""
# What CSV had to quote or escape, text that reads like NULL, non-ASCII, and the extremes.
ROWS: list[tuple[Any, ...]] = [
    (1, "DE", "Anna", "Female", 30, "1 Main St"),
    (-(2**63), "X ", "", None, None, None),
    (2**63 - 1, "US", 'a "quoted", name', "", -32768, ""),
    (3, "é1", "line\nbreak\r\n", "\\N", 32767, "back\\slash,\ttab"),
    (4, "FR", "😀 Zoë Łukasz", "NULL", 0, '""'),
    (5, "GB", "x" * 3000, None, 150, "y" * 70_000),
]


def _copy(conn: psycopg.Connection[Any], payload: bytes, piece: int) -> None:
    with conn.cursor().copy("COPY target FROM STDIN (FORMAT binary)") as copy:
        for start in range(0, len(payload), piece):
            copy.write(payload[start : start + piece])


def test_binary_rows_are_read_back_as_they_were_given(connect: Connect) -> None:
    load_id = uuid.uuid4()
    table = pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in ROWS], SCHEMA)
    # The same rows again in chunks, and some as one slice (arrays starting inside their
    # buffers).
    again = pa.concat_tables([table.slice(1, 3), table.slice(4), table.slice(0, 1)])
    inside = table.slice(2)
    constant = binary_rows.fields(load_id, "crm")
    payload = (
        binary_rows.HEADER
        + bytes(binary_rows.encode(table, constant, constant_fields=2))
        + bytes(binary_rows.encode(again, binary_rows.fields(load_id, None), constant_fields=2))
        + bytes(binary_rows.encode(inside, constant, constant_fields=2))
        + binary_rows.TRAILER
    )
    expected = [(*r, load_id, "crm") for r in ROWS + ROWS[2:]] + [(*r, load_id, None) for r in ROWS]
    with connect("default") as conn:
        conn.execute(TABLE)
        for piece in (len(payload), 7, 1):  # whole, and cut inside every field
            conn.execute("TRUNCATE target")
            _copy(conn, payload, piece)
            got = conn.execute("SELECT * FROM target").fetchall()
            assert sorted(got, key=repr) == sorted(expected, key=repr)


def test_a_batch_of_no_rows_sends_nothing() -> None:
    empty = pa.Table.from_pylist([], SCHEMA)
    assert len(binary_rows.encode(empty, binary_rows.fields(None), constant_fields=1)) == 0
    # Columns of no chunks at all, as a table of no batches has.
    chunkless = pa.table(
        {
            name: pa.chunked_array([], kind)
            for name, kind in zip(SCHEMA.names, SCHEMA.types, strict=True)
        }
    )
    assert all(column.num_chunks == 0 for column in chunkless.columns)
    assert len(binary_rows.encode(chunkless)) == 0


def test_null_slots_that_hold_bytes_are_sent_as_null(connect: Connect) -> None:
    # Arrow lets a NULL slot keep a length and bytes (a producer's leftovers): its field must
    # be -1 with nothing after it, whatever the slot holds.
    def text(values: bytes, ends: list[int], valid: list[bool]) -> pa.Array:
        offsets = pa.py_buffer(np.array([0, *ends], np.int32))
        bits = pa.py_buffer(np.packbits(np.array(valid), bitorder="little"))
        return pa.StringArray.from_buffers(len(ends), offsets, pa.py_buffer(values), bits)

    ages = pa.Array.from_buffers(
        pa.int16(), 3, [pa.py_buffer(np.packbits([1, 0, 1], bitorder="little")),
                        pa.py_buffer(np.array([7, 12345, 9], np.int16))])  # fmt: skip
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "country": ["DE", "FR", "GB"],
            "name": text(b"annagarbagebo", [4, 11, 13], [True, False, True]),
            "gender": text(b"xyz", [1, 2, 3], [False, False, False]),
            "age": ages,
            "address": text(b"streetjunk", [6, 10, 10], [True, False, True]),
        }
    )
    assert table.column("name").null_count == 1
    payload = binary_rows.HEADER + bytes(binary_rows.encode(table)) + binary_rows.TRAILER
    with connect("default") as conn:
        conn.execute(TABLE)
        with conn.cursor().copy(
            "COPY target (id, country, name, gender, age, address) FROM STDIN (FORMAT binary)"
        ) as copy:
            copy.write(payload)
        got = conn.execute(
            "SELECT id, country, name, gender, age, address FROM target ORDER BY id"
        ).fetchall()
    assert got == [
        (1, "DE", "anna", None, 7, "street"),
        (2, "FR", None, None, None, None),
        (3, "GB", "bo", None, 9, ""),
    ]


def test_a_column_without_a_binary_form_is_refused() -> None:
    with pytest.raises(TypeError, match="no binary COPY form"):
        binary_rows.encode(pa.table({"x": pa.array([1.5])}))


def _batch(start: int, count: int) -> pa.Table:
    ids = range(start, start + count)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "country": ["DE"] * count,
            "name": [f"name {i}" for i in ids],
            "gender": [None if i % 3 else "Male" for i in ids],
            "age": pa.array([None if i % 5 == 0 else i % 150 for i in ids], pa.int16()),
            "address": [f"{i} Long Street, " + "z" * (i % 90) for i in ids],
        }
    )


@pytest.mark.usefixtures("initialised")
def test_the_direct_copy_sends_every_batch_in_order_past_psycopgs_buffer(
    connect: Connect,
) -> None:
    # Five batches, so that each waits for the one before while another is encoded; each is
    # far past the 128 KiB psycopg cuts a buffer into.
    batches = [_batch(1 + n * 4_000, 4_000) for n in range(5)]
    assert all(len(binary_rows.encode(b)) > 3 * 128 * 1024 for b in batches)
    load_id = str(uuid.uuid4())
    with connect("default") as conn, conn.transaction():
        direct = DirectCopy(conn, Watchdog(60), load_id, "crm")
        for batch in batches:
            direct.write(batch)
        direct.finish()
        got = conn.execute(
            "SELECT id, country, name, gender, age, address, load_id::text, source"
            " FROM residents ORDER BY id"
        ).fetchall()
    expected = [(*row.values(), load_id, "crm") for batch in batches for row in batch.to_pylist()]
    assert got == expected


@pytest.mark.usefixtures("initialised")
def test_an_id_the_shard_holds_fails_the_direct_copy_and_abandon_leaves_nothing(
    connect: Connect,
) -> None:
    with connect("default") as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (4500, 'DE', 'by hand')")
        conn.autocommit = False
        direct = DirectCopy(conn, Watchdog(60), str(uuid.uuid4()), None)
        with pytest.raises(psycopg.errors.UniqueViolation):
            for n in range(3):  # the second batch holds 4500: raised by a write or by finish
                direct.write(_batch(1 + n * 4_000, 4_000))
            direct.finish()
        direct.abandon()
        conn.rollback()
        conn.autocommit = True
        assert conn.execute("SELECT id, name FROM residents").fetchall() == [(4500, "by hand")]
        # The connection is usable again, and a new COPY on it loads.
        again = DirectCopy(conn, Watchdog(60), str(uuid.uuid4()), None)
        with conn.transaction():
            again.write(_batch(10_000, 10))
            again.finish()
        assert conn.execute("SELECT count(*) FROM residents").fetchone() == (11,)


@pytest.mark.usefixtures("initialised")
def test_an_abandoned_direct_copy_waits_for_its_batch_and_leaves_nothing(
    connect: Connect,
) -> None:
    with connect("default") as conn:
        conn.autocommit = False
        direct = DirectCopy(conn, Watchdog(60), str(uuid.uuid4()), None)
        for n in range(3):  # the COPY open, a batch in flight
            direct.write(_batch(1 + n * 4_000, 4_000))
        direct.abandon()
        conn.rollback()
        conn.autocommit = True
        assert conn.execute("SELECT count(*) FROM residents").fetchone() == (0,)
        direct.abandon()  # again: nothing left to end


@pytest.mark.usefixtures("initialised")
def test_a_connection_lost_mid_copy_is_an_error_not_a_hang(connect: Connect) -> None:
    with connect("default") as conn, connect("default") as other:
        conn.autocommit = False
        direct = DirectCopy(conn, Watchdog(60), str(uuid.uuid4()), None)
        direct.write(_batch(1, 4_000))
        other.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            for n in range(1, 20):  # raised by a later write, or at the latest by finish
                direct.write(_batch(1 + n * 4_000, 4_000))
            direct.finish()
        direct.abandon()
    with connect("default") as check:
        assert check.execute("SELECT count(*) FROM residents").fetchone() == (0,)


@pytest.mark.usefixtures("initialised")
def test_the_watchdog_ends_a_direct_copy_the_server_stopped_taking(connect: Connect) -> None:
    # Another transaction's uncommitted row holds id 2: the COPY waits for it at that row and
    # takes no more data. The batches queued behind fill the writer's queue and block the
    # encoder's thread; the caller's wait for its batch is the one the watchdog ends.
    with connect("default") as conn, connect("default") as blocker:
        blocker.autocommit = False
        blocker.execute("INSERT INTO residents (id, country, name) VALUES (2, 'DE', 'held')")
        conn.autocommit = False
        watchdog = Watchdog(2)
        direct = DirectCopy(conn, watchdog, str(uuid.uuid4()), None)
        with pytest.raises(psycopg.Error):
            for n in range(30):
                direct.write(_batch(1 + n * 4_000, 4_000))
            direct.finish()
        direct.abandon()
        watchdog.close()
        conn.rollback()
        blocker.rollback()
        conn.autocommit = True
        assert conn.execute("SELECT count(*) FROM residents").fetchone() == (0,)


class _ThreadsWatched(Watchdog):
    """A watchdog that notes which threads wait under it."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.threads: set[int] = set()

    def waiting(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().waiting(*args, **kwargs)


@pytest.mark.usefixtures("initialised")
def test_only_the_callers_thread_waits_under_the_shards_watchdog(connect: Connect) -> None:
    # The watchdog keeps one thread's nested waits: a wait entered in the encoder's thread
    # and left while the caller's was open would leave the caller's unwatched, and a stale
    # one behind to fire later.
    watchdog = _ThreadsWatched(60)
    with connect("default") as conn, conn.transaction():
        direct = DirectCopy(conn, watchdog, str(uuid.uuid4()), None)
        for n in range(5):
            direct.write(_batch(1 + n * 4_000, 4_000))
        direct.finish()
    assert watchdog.threads == {threading.get_ident()}
