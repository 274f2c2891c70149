"""Rows too wide for the packed chunks of Parquet and DataFrames (pipeline.packed): a chunk
of CHUNK_ROWS residents that the server cannot build in one value (1 GB) is asked for again
in smaller chunks, after the last one sent, and the export is whole; a tuple cut into many
pieces is read as one; Parquet row groups are cut at ROW_GROUP_BYTES as well as at
ROW_GROUP rows. The servers' test builds two such chunks of real rows (on two servers)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from pipeline import columnar, copyout, packed
from pipeline.columnar import record_batches
from pipeline.errors import PipelineError
from pipeline.extract import COLUMNS
from tests.conftest import RunCli
from tests.test_extract_writers import copy_packed

HEADER = 19  # a binary COPY stream's signature, flags and extension length


def resident(rid: int) -> tuple[object, ...]:
    return (rid, "US", f"n{rid}", None, rid % 100, None)


def tuple_bytes(rows: list[tuple[object, ...]]) -> bytes:
    """One packed tuple of `rows`, as sql/extract/columns.sql sends it."""
    return copy_packed(rows, len(rows))[HEADER:-2]


class Refusing:
    """A `copy(after, rows)` for packed.resumable over residents `ids`: its first COPY hands
    on `sent_before` tuples and is then refused, as the server refuses a chunk over 1 GB;
    the later COPYs send the rest. `calls` records what each was asked for."""

    def __init__(self, ids: list[int], sent_before: int) -> None:
        self.ids, self.sent_before = ids, sent_before
        self.calls: list[tuple[int | None, int]] = []

    def __call__(self, after: int | None, rows: int) -> Iterator[bytes]:
        self.calls.append((after, rows))
        left = [resident(i) for i in self.ids if after is None or i > after]
        tuples = [tuple_bytes(left[i : i + rows]) for i in range(0, len(left), rows)]
        header = copy_packed([], 1)[:HEADER]
        if len(self.calls) == 1:
            for i, data in enumerate(tuples[: self.sent_before]):
                yield (header if i == 0 else b"") + data
            raise psycopg.errors.ProgramLimitExceeded("string buffer exceeds maximum length")
        yield header + b"".join(tuples[:1])
        yield from tuples[1:]
        yield struct.pack(">h", -1)


@pytest.mark.parametrize("sent_before", [0, 1, 2])
def test_a_refused_chunk_is_asked_for_again_after_the_last_one_sent(
    monkeypatch: pytest.MonkeyPatch, sent_before: int
) -> None:
    monkeypatch.setattr(packed, "CHUNK_ROWS", 8)
    ids = list(range(1, 41))
    copy = Refusing(ids, sent_before)
    stream = packed.resumable(copy, id_field=1)
    batches = list(record_batches([("db_us", stream)], COLUMNS))
    assert [r["id"] for b in batches for r in b.to_pylist()] == ids  # each once, in order
    after = None if sent_before == 0 else 8 * sent_before
    assert copy.calls == [(None, 8), (after, max(1, 8 // packed.SHRINK))]


def test_a_chunk_of_one_row_refused_is_the_shards_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packed, "CHUNK_ROWS", 1)

    def copy(after: int | None, rows: int) -> Iterator[bytes]:
        yield from ()
        raise psycopg.errors.ProgramLimitExceeded("string buffer exceeds maximum length")

    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        list(packed.resumable(copy, id_field=1))


def test_a_chunk_not_cut_at_a_row_end_cannot_be_resumed_after() -> None:
    whole = copy_packed([resident(1), resident(2)], 2)
    with pytest.raises(PipelineError, match="row's end"):
        list(packed.resumable(lambda after, rows: iter([whole[:-5], whole[-5:]]), id_field=1))


@pytest.mark.parametrize("piece", [1, 3, 64, 4096])
def test_a_tuple_in_many_small_pieces_is_read_as_one(piece: int) -> None:
    # One tuple of wide names, replayed in pieces as a spool replays it: its pieces are
    # joined once they hold what its headers say, not again with each piece.
    rows: list[tuple[object, ...]] = [
        (i, "US", "x" * 5000 + str(i), None, 1, "a") for i in range(1, 9)
    ]
    stream = copy_packed(rows, 4)
    pieces = (stream[i : i + piece] for i in range(0, len(stream), piece))
    batches = list(record_batches([("db_us", pieces)], COLUMNS))
    assert [tuple(r.values())[1:] for b in batches for r in b.to_pylist()] == rows


def wide_name(rid: int, width: int = 65_536) -> str:
    return (hashlib.md5(str(rid).encode()).hexdigest() * 2048)[:width]  # 65,536 bytes at most


def narrow_name(rid: int) -> str:
    return f"n{rid}" + "-" * 80


def fill_wide(dsn: str, country: str, narrow: int, wide: int, width: int = 65_536) -> None:
    """`narrow` residents of short names (ids from 1), then `wide` of names `width` bytes
    long (65,536: the longest field a load accepts, rules.yaml)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE residents")
        conn.execute(
            "INSERT INTO residents (id, country, name) SELECT g, %s, 'n' || g || repeat('-', 80)"
            " FROM generate_series(1, %s::int) AS g",
            [country, narrow],
        )
        conn.execute(
            "INSERT INTO residents (id, country, name)"
            " SELECT g, %s, left(repeat(md5(g::text), 2048), %s)"
            " FROM generate_series(%s::int, %s::int) AS g",
            [country, width, narrow + 1, narrow + wide],
        )


@pytest.mark.slow
def test_a_parquet_export_of_rows_too_wide_for_a_packed_chunk_is_whole(
    run_cli: RunCli, config_file: Path, initialised: None, shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    # default, streamed: a first chunk of short names (over copyout.CHUNK, so it is handed
    # on), then CHUNK_ROWS of 64 KB names: more than 1 GB in one value, which the server
    # refuses; db_us, read ahead: such a chunk first, nothing handed on before it, its
    # names a byte shorter: the value fits in 1 GB, the COPY row that holds it does not.
    size = packed.CHUNK_ROWS
    assert size * 65_536 > (1 << 30) - 1 and size * len(narrow_name(1)) > copyout.CHUNK
    assert (1 << 30) - 1 - size * 65_535 < 65_536  # its sizes field and the rest
    narrow = size
    fill_wide(shard_dsns["default"], "DE", narrow, size)
    fill_wide(shard_dsns["db_us"], "US", 0, size, width=65_535)
    out = tmp_path / "r.parquet"
    result = run_cli("extract", "-o", str(out), config=config_file)
    assert result.exit_code == 0, result.output
    found: dict[str, list[int]] = {"default": [], "db_us": []}
    file = pq.ParquetFile(out)
    for batch in file.iter_batches(batch_size=1024, columns=["shard", "id", "name"]):
        for shard, rid, name in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
            if shard == "db_us":
                assert name == wide_name(rid, 65_535), (shard, rid)
            else:
                assert name == (wide_name(rid) if rid > narrow else narrow_name(rid)), rid
            found[shard].append(rid)
    assert found == {
        "default": list(range(1, narrow + size + 1)),
        "db_us": list(range(1, size + 1)),
    }
    groups = [file.metadata.row_group(i) for i in range(file.metadata.num_row_groups)]
    assert all(g.num_rows < columnar.ROW_GROUP for g in groups)  # cut at ROW_GROUP_BYTES
    assert sum(g.num_rows for g in groups) == narrow + 2 * size
