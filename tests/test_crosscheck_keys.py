"""The cross-shard checks' keys as the servers send them (sql/check/ids.sql, people.sql) and as
pipeline.crosscheck reads them: one bytea of big-endian int64 a chunk, in COPY's binary
format, read whole however the stream is cut."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pipeline import crosscheck
from pipeline.binary_rows import HEADER, TRAILER
from pipeline.copyout import CopyOut
from pipeline.queries import CHECK
from tests.conftest import Connect


def stream(conn: psycopg.Connection, aggregates: sql.Composable, rows: int) -> bytes:
    statement = crosscheck._chunks(conn, aggregates, rows)
    return b"".join(bytes(c) for c in CopyOut(conn, CHECK.copy.format(rows=statement)))


def pieces(data: bytes, size: int) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def keys_row(*values: int) -> bytes:
    value = b"".join(struct.pack(">q", v) for v in values)
    return struct.pack(">hi", 1, len(value)) + value


@pytest.mark.parametrize("piece", [1, 7, 24, 4096, 1 << 30])
@pytest.mark.parametrize("path", ["TID ranges", "PostgreSQL 13's grouping"])
def test_keys_are_read_whole_however_the_stream_is_cut(
    loaded: None, connect: Connect, monkeypatch: pytest.MonkeyPatch, piece: int, path: str
) -> None:
    # More chunks than one: a few blocks a chunk (or a few dozen rows on PostgreSQL 13).
    monkeypatch.setattr(crosscheck, "CHUNK_BLOCKS", 2)
    monkeypatch.setattr(crosscheck, "CHUNK_ROWS", 40)
    if path != "TID ranges":
        monkeypatch.setattr(crosscheck, "TID_RANGES_SINCE", 10**9)
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " SELECT i, 'DE', 'Person ' || i, i % 90, i || ' Main St'"
            " FROM generate_series(10000, 12999) AS i"
        )
        expected = np.array(
            conn.execute("SELECT person_key, id FROM residents ORDER BY id").fetchall(),
            dtype=np.int64,
        )
        held = len(expected)
        people = stream(conn, CHECK.people, held)
        ids = stream(conn, CHECK.ids, held)
    chunks = 0
    found = []
    for keys in crosscheck._binary_keys(pieces(people, piece), 2):
        chunks += 1
        found.append(keys)
    assert chunks > 1
    pairs = np.concatenate(found)
    assert pairs.shape == expected.shape
    assert np.array_equal(pairs[np.argsort(pairs[:, 1])], expected)
    only_ids = np.concatenate(list(crosscheck._binary_keys(pieces(ids, piece), 1)))
    assert np.array_equal(np.sort(only_ids[:, 0]), expected[:, 1])


def test_an_empty_shard_sends_no_keys() -> None:
    assert list(crosscheck._binary_keys([HEADER + TRAILER], 2)) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (struct.pack(">hi", 1, -1), "was NULL"),
        (keys_row(1, 2, 3), "not 2 bigint a resident"),
        (struct.pack(">hi", 2, 16) + bytes(16), "one column a row"),
        (keys_row(1, 2)[:-3], "ended inside a row"),
    ],
)
def test_keys_the_servers_would_not_send_are_refused(body: bytes, message: str) -> None:
    data = HEADER + keys_row(5, 6) + body
    if message != "ended inside a row":
        data += TRAILER
    with pytest.raises(psycopg.DataError, match=message):
        list(crosscheck._binary_keys(pieces(data, 5), 2))


def test_a_stream_that_is_not_copys_binary_format_is_refused() -> None:
    with pytest.raises(psycopg.DataError, match="binary format"):
        list(crosscheck._binary_keys([b"id,country\n1,DE\n" + bytes(20)], 1))
