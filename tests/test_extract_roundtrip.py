"""Every export read back by standard readers gives exactly what the shards hold.

Four kinds of test, all on real servers:
- values: generated residents whose text holds quotes, backslashes, line ends, tabs,
  control characters, non-ASCII and emoji, exported in every format and read back;
- sizes: the second and third shards (read ahead, spooled and replayed) hold one row less,
  as many and one more than each buffer, chunk and spool size in the code's constants, in
  bytes and, for the packed columns of Parquet and DataFrames, in rows;
- a third-party reader (DuckDB) reads every format with the right row counts and types;
- text a SQL_ASCII database holds that is not UTF-8 fails a Parquet export on the server.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import columnar, copyout, packed
from pipeline.config import load_shard_map
from pipeline.extract import (
    FORMULA_STARTS,
    ExtractResult,
    Selection,
    shard_streams,
    to_dataframe,
)
from tests.conftest import RunCli, Server, shard_map_yaml, write_map

COLUMNS = ["shard", "id", "country", "name", "gender", "age", "address"]
FORMATS = ["csv", "raw", "json", "ndjson", "parquet", "dataframe"]
Row = tuple[Any, ...]


@pytest.fixture
def three_shards(
    run_cli: RunCli, shard_dsns: dict[str, str], third_server: Server, tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """default, db_us (US) and db_ca (CA), each on a server of its own, initialised."""
    database = third_server.create_database()
    dsns = {**shard_dsns, "db_ca": third_server.dsn_for(database)}
    try:
        config = write_map(
            tmp_path / "config", shard_map_yaml(dsns, routes="db_us: [US]\n  db_ca: [CA]")
        )
        assert run_cli("init", config=config).exit_code == 0
        yield config, dsns
    finally:
        third_server.drop_database(database)


def stored(dsns: dict[str, str]) -> list[Row]:
    """Every resident as the shards hold them, in extract order (shard-map order, then id)."""
    found: list[Row] = []
    for shard, dsn in dsns.items():
        with psycopg.connect(dsn) as conn:
            found += conn.execute(
                "SELECT %s::text, id, country, name, gender, age, address"
                " FROM residents ORDER BY id",
                [shard],
            ).fetchall()
    return found


def exported(run_cli: RunCli, config: Path, fmt: str, folder: Path) -> list[Row]:
    """Every resident as `pipeline extract` writes them in `fmt`, read back by a standard
    reader (csv, json, pyarrow), NULL as None; `dataframe` is to_dataframe()."""
    if fmt == "dataframe":
        frame = to_dataframe(config=config)
        assert list(frame.columns) == COLUMNS
        return [
            tuple(None if v is pd.NA else v for v in row)
            for row in frame.astype(object).itertuples(index=False)
        ]
    suffix = "csv" if fmt == "raw" else fmt
    out = folder / f"residents.{suffix}"
    raw = ["--raw"] if fmt == "raw" else []
    result = run_cli("extract", "-o", str(out), *raw, config=config)
    assert result.exit_code == 0, result.output
    if fmt in ("csv", "raw"):
        with open(out, newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            assert next(reader) == COLUMNS
            return [
                (s, int(i), c, n, g, int(a) if a else None, ad) for s, i, c, n, g, a, ad in reader
            ]
    if fmt == "json":
        objects = json.loads(out.read_bytes())
    elif fmt == "ndjson":
        objects = [json.loads(line) for line in out.read_bytes().split(b"\n") if line]
        assert out.read_bytes().count(b"\n") == len(objects)
    else:
        table = pq.read_table(out)
        assert [str(t) for t in table.schema.types] == [
            "string", "int64", "string", "string", "string", "int16", "string"
        ]  # fmt: skip
        objects = table.to_pylist()
    assert all(list(o) == COLUMNS for o in objects)
    return [tuple(o.values()) for o in objects]


def expected_in(fmt: str, rows: list[Row]) -> list[Row]:
    """What `fmt` can say of `rows`: CSV read by Python's csv module has no NULL (an empty
    field either way), and CSV without --raw defuses cells that start like a formula."""
    if fmt not in ("csv", "raw"):
        return rows

    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if fmt == "csv" and isinstance(value, str) and value.startswith(FORMULA_STARTS):
            return "'" + value
        return value

    return [(s, i, cell(c), cell(n), cell(g), a, cell(ad)) for s, i, c, n, g, a, ad in rows]


def insert(dsn: str, rows: list[Row]) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE residents")
        with cur.copy("COPY residents (id, country, name, gender, age, address) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)


# -- values --------------------------------------------------------------------------------

NASTY = ['"', "'", "\\", "\\\\", "\\\\\\", "\n", "\r", "\r\n", "\t", ",", ";", "\x01", "\x1f",
         "\x7f", "\x85", "\u2028", "é", "ß", "Ω", "😀", "👩‍👩‍👧", "NULL", "null", "N/A", "\\N",
         "=1+2", "+", "-", "@", " ", "ab"]  # fmt: skip
text = st.lists(
    st.sampled_from(NASTY)
    | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=4),
    max_size=6,
).map("".join)
person = st.tuples(
    st.integers(1, 10**15 - 1),
    text.filter(bool),  # name: NOT NULL
    st.none() | text,
    st.none() | st.integers(0, 150),
    st.none() | text,
)
countries = {"default": ["DE", "FR", "X", '"\\', "=1", "é😀"], "db_us": ["US"], "db_ca": ["CA"]}


@pytest.mark.slow
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_format_gives_back_exactly_what_the_shards_hold(
    run_cli: RunCli,
    three_shards: tuple[Path, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
) -> None:
    config, dsns = three_shards
    for shard, dsn in dsns.items():
        people = data.draw(st.lists(person, max_size=8, unique_by=lambda p: p[0]), label=shard)
        codes = countries[shard]
        insert(dsn, [(i, codes[i % len(codes)], n, g, a, ad) for i, n, g, a, ad in people])
    rows = stored(dsns)
    folder = tmp_path_factory.mktemp("out")
    results = {fmt: exported(run_cli, config, fmt, folder) for fmt in FORMATS}
    for fmt, found in results.items():
        assert found == expected_in(fmt, rows), fmt


# -- sizes ---------------------------------------------------------------------------------

# Every buffer, chunk and spool size an export crosses, from the code's own constants.
BOUNDARIES = sorted({copyout.CHUNK, copyout.SPOOL_IN_MEMORY})
COLUMNAR = ("parquet", "dataframe")
# A row of fixed length in every format: backslashes and quotes wherever a cut may land.
FILL = (
    "INSERT INTO residents (id, country, name, gender, age, address)"
    " SELECT 100000000000000 + i, %(country)s, 'Name ' || lpad(i::text, 9, '0') || E' \\\\\"',"
    " 'Female', 42, repeat(E'\\\\\\\\\"x', 9) || E'\\\\'"
    " FROM generate_series(1, %(rows)s) AS i"
)


def fill(dsn: str, country: str, count: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE residents")
        conn.execute(FILL, {"country": country, "rows": count})


def stream_size(config: Path, dsn: str, country: str, fmt: str, rows: int) -> int:
    """Bytes of `rows` such rows in `fmt`'s COPY stream."""
    fill(dsn, country, rows)
    shard_map = load_shard_map(config)
    statement = "extract_json" if fmt in ("json", "ndjson") else "extract_rows"
    if fmt in COLUMNAR:
        statement = "extract_columns"
    selection = Selection(countries=(country,))
    streams = shard_streams(
        shard_map,
        selection,
        statement,
        ExtractResult(),
        defuse=fmt == "csv",
        with_shard=fmt not in COLUMNAR,
    )
    return sum(len(chunk) for _, chunks in streams for chunk in chunks)


def rows_to(boundary: int, config: Path, dsn: str, country: str, fmt: str) -> int:
    """The most rows whose COPY stream in `fmt` holds at most `boundary` bytes. A row takes
    the same bytes in every format; the packed stream also takes some for each chunk of
    packed.CHUNK_ROWS rows, and some once."""
    row = stream_size(config, dsn, country, fmt, 20) - stream_size(config, dsn, country, fmt, 10)
    assert row % 10 == 0
    row //= 10
    once = stream_size(config, dsn, country, fmt, 10) - 10 * row
    chunk = 0
    if fmt in COLUMNAR:
        two = packed.CHUNK_ROWS + 10
        chunk = stream_size(config, dsn, country, fmt, two) - once - two * row
        once -= chunk

    def size(rows: int) -> int:
        return once + row * rows + chunk * -(-rows // packed.CHUNK_ROWS)

    rows = (boundary - once) // row
    while size(rows) > boundary:
        rows -= 1
    assert size(rows) <= boundary < size(rows + 1)
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_later_shards_cross_every_buffer_boundary_in_every_format(
    run_cli: RunCli, three_shards: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str
) -> None:
    config, dsns = three_shards
    fill(dsns["default"], "DE", 3)
    for boundary in BOUNDARIES:
        us = rows_to(boundary, config, dsns["db_us"], "US", fmt)
        ca = rows_to(boundary, config, dsns["db_ca"], "CA", fmt)
        # db_us ends one row short of, on, and one row past the boundary; db_ca the other way.
        for delta in (-1, 0, 1):
            fill(dsns["db_us"], "US", us + delta)
            fill(dsns["db_ca"], "CA", ca - delta)
            rows = stored(dsns)
            found = exported(run_cli, config, fmt, tmp_path)
            assert len(found) == len(rows), (boundary, delta)
            assert found == expected_in(fmt, rows), (boundary, delta)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", COLUMNAR)
def test_packed_chunks_cross_their_size_in_every_shard(
    run_cli: RunCli, three_shards: tuple[Path, dict[str, str]], tmp_path: Path, fmt: str
) -> None:
    # The server packs packed.CHUNK_ROWS residents into a COPY row: the first shard (read
    # as it comes) and the later ones (spooled) hold one row less, as many, one more, twice.
    config, dsns = three_shards
    size = packed.CHUNK_ROWS
    for default, us, ca in [(size - 1, size, size + 1), (size + 1, size - 1, 2 * size), (0, 1, 0)]:
        fill(dsns["default"], "DE", default)
        fill(dsns["db_us"], "US", us)
        fill(dsns["db_ca"], "CA", ca)
        rows = stored(dsns)
        found = exported(run_cli, config, fmt, tmp_path)
        assert len(found) == default + us + ca
        assert found == rows, (default, us, ca)


# -- a third-party reader ------------------------------------------------------------------


def test_duckdb_reads_every_export_with_its_rows_and_types(
    run_cli: RunCli, three_shards: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, dsns = three_shards
    insert(dsns["default"], [(1, "DE", 'Ann "A" \\ B', "Female", 30, "a\nb\tc 😀"),
                             (2, "FR", "Bob", None, None, "")])  # fmt: skip
    fill(dsns["db_us"], "US", copyout.CHUNK // 100)  # well past a chunk: read ahead, spooled
    insert(dsns["db_ca"], [(3, "CA", "Cé", "Other", 150, None)])
    rows = stored(dsns)
    readers = {
        "csv": "read_csv('{}', header=true, quote='\"', escape='\"')",
        "json": "read_json('{}', format='array')",
        "ndjson": "read_json('{}', format='newline_delimited')",
        "parquet": "read_parquet('{}')",
    }
    for fmt, reader in readers.items():
        out = tmp_path / f"r.{fmt}"
        raw = ["--raw"] if fmt == "csv" else []
        assert run_cli("extract", *raw, "-o", str(out), config=config).exit_code == 0
        with duckdb.connect() as db:
            relation = db.sql(f"SELECT * FROM {reader.format(out)}")
            assert relation.columns == COLUMNS, fmt
            types = dict(zip(relation.columns, map(str, relation.types), strict=True))
            assert types["id"] == "BIGINT" and types["name"] == "VARCHAR", (fmt, types)
            found = relation.fetchall()
        assert len(found) == len(rows), fmt
        assert [(r[0], r[1], r[3]) for r in found] == [(r[0], r[1], r[3]) for r in rows], fmt


@pytest.mark.slow
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_parquet_row_groups_hold_row_group_rows_across_shards(
    run_cli: RunCli, three_shards: tuple[Path, dict[str, str]], tmp_path: Path, delta: int
) -> None:
    # Row groups gather rows across shards: one row short of, on, and one past a group's
    # size, counted over all three shards, and twice that.
    config, dsns = three_shards
    fill(dsns["default"], "DE", 3)
    fill(dsns["db_us"], "US", columnar.ROW_GROUP - 3 - 5)
    fill(dsns["db_ca"], "CA", 5 + delta + columnar.ROW_GROUP)
    rows = stored(dsns)
    assert exported(run_cli, config, "parquet", tmp_path) == rows
    metadata = pq.ParquetFile(tmp_path / "residents.parquet").metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    whole, rest = divmod(len(rows), columnar.ROW_GROUP)
    assert sizes == [columnar.ROW_GROUP] * whole + ([rest] if rest else [])
    # Ids as their differences, which go back down where a group goes on to the next shard.
    at = metadata.schema.to_arrow_schema().names.index("id")
    for i in range(metadata.num_row_groups):
        assert "DELTA_BINARY_PACKED" in metadata.row_group(i).column(at).encodings


def test_parquet_from_a_sql_ascii_shard_checks_its_text(
    run_cli: RunCli, pg_servers: list[Server], shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    """A server whose encoding is UTF8 has refused any text that is not; a SQL_ASCII one
    stores any bytes. The server checks them on the way out (the connection's encoding is
    UTF8), which pipeline.packed counts on: UTF-8 is exported, anything else fails the
    export with one line, and no file."""
    server = pg_servers[0]
    database = f"t_ascii_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL(
                "CREATE DATABASE {} ENCODING SQL_ASCII LOCALE 'C' TEMPLATE template0"
            ).format(psycopg.sql.Identifier(database))
        )
    try:
        dsns = {**shard_dsns, "default": server.dsn_for(database)}
        config = write_map(tmp_path / "config", shard_map_yaml(dsns))
        assert run_cli("init", config=config).exit_code == 0
        out = tmp_path / "residents.parquet"
        with psycopg.connect(dsns["default"], autocommit=True) as conn:
            insert = (
                "INSERT INTO residents (id, country, name)"
                " VALUES (%s, 'DE', convert_from(%s, 'SQL_ASCII'))"
            )
            conn.execute(insert, [1, "Ren\u00e9 \U0001f600".encode()])
            result = run_cli("extract", "-o", str(out), config=config)
            assert result.exit_code == 0, result.output
            assert pq.read_table(out).column("name").to_pylist() == ["Ren\u00e9 \U0001f600"]
            # Each value checked, not the chunk's text joined: two values that each hold
            # half of an é (C3 A9) would read as one whole character.
            conn.execute(insert, [2, b"Ren\xc3"])
            conn.execute(insert, [3, b"\xa9 Muller"])
        out.unlink()
        for target in (out, tmp_path / "residents.csv"):
            result = run_cli("extract", "-o", str(target), config=config)
            assert result.exit_code == 1
            assert 'invalid byte sequence for encoding "UTF8": 0xc3' in result.output
            assert len(result.output.strip().splitlines()) == 1
            assert not target.exists()
        with psycopg.connect(dsns["default"], autocommit=True) as conn:
            conn.execute("DELETE FROM residents WHERE id = 3")
            conn.execute(insert, [3, b"Ren\xe9"])  # LATIN1's é: not UTF-8
            conn.execute("DELETE FROM residents WHERE id = 2")
        result = run_cli("extract", "-o", str(out), config=config)
        assert result.exit_code == 1
        assert 'invalid byte sequence for encoding "UTF8"' in result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not out.exists()
    finally:
        server.drop_database(database)
