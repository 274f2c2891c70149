"""The extract writers given COPY output cut anywhere: no database, every cut position.

A read-ahead spool is replayed in slices of its own size, not at row ends, so a writer
may get half a row, or the first of the two backslashes COPY's text format doubles, and
the columnar reader part of a packed chunk (sql/extract/columns.sql). Every writer must
give the same output however its input is cut.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import packed
from pipeline.columnar import record_batches
from pipeline.errors import PipelineError
from pipeline.extract import COLUMNS
from pipeline.text_output import write_csv, write_json

# Values that have broken writers: quotes, backslashes (doubled, trailing), line ends, tabs,
# control characters, non-ASCII, emoji, and text that looks like a null or a formula.
NASTY = ['"', "\\", "\\\\", "\\n", "\n", "\r", "\r\n", "\t", ",", "\x01", "\x7f", "é", "😀",
         "NULL", "N/A", "\\N", "=1", " ", "ab"]  # fmt: skip
texts = st.lists(st.sampled_from(NASTY) | st.text(max_size=3), max_size=6).map("".join)
residents = st.lists(
    st.tuples(
        st.sampled_from(["default", "db_us"]),
        st.integers(1, 10**15),
        st.sampled_from(["DE", "US", "X ", '"\\']),
        texts.filter(bool),
        st.none() | texts,
        st.none() | st.integers(0, 150),
        st.none() | texts,
    ),
    max_size=12,
)


def copy_json_lines(rows: list[tuple[object, ...]]) -> bytes:
    """What `COPY (SELECT json_build_object(...)::text ...) TO STDOUT` sends for `rows`: one
    object a line, every backslash doubled by the text format."""
    lines = (json.dumps(dict(zip(COLUMNS, row, strict=True)), ensure_ascii=False) for row in rows)
    return b"".join(line.replace("\\", "\\\\").encode() + b"\n" for line in lines)


def copy_csv(rows: list[tuple[object, ...]]) -> bytes:
    """What `COPY (...) TO STDOUT (FORMAT csv)` sends: NULL unquoted and empty, "" for ''."""

    def cell(value: object) -> str:
        if value is None:
            return ""
        text = str(value)
        if text == "" or any(c in text for c in ',"\n\r'):
            return '"' + text.replace('"', '""') + '"'
        return text

    return b"".join((",".join(map(cell, row)) + "\n").encode() for row in rows)


def copy_packed(rows: list[tuple[object, ...]], chunk_rows: int) -> bytes:
    """What sql/extract/columns.sql sends for `rows` (no shard column) in COPY's binary
    format: a tuple a chunk of `chunk_rows`, its count, then each column packed (country
    between zero bytes, each text column as its sizes and its values, two fields)."""

    def text(value: object) -> bytes:
        return b"\xff" if value is None else str(value).encode()

    def sized(values: tuple[object, ...]) -> tuple[bytes, bytes]:  # extract/packed_sized.sql
        data = [b"" if v is None else str(v).encode() for v in values]
        sizes = (-1 if v is None else len(d) for v, d in zip(values, data, strict=True))
        return b"".join(struct.pack(">i", size) for size in sizes), b"".join(data)

    def field(data: bytes) -> bytes:
        return struct.pack(">i", len(data)) + data

    out = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    for start in range(0, len(rows), chunk_rows):
        chunk = rows[start : start + chunk_rows]
        columns = list(zip(*chunk, strict=True))
        packed = [
            struct.pack(">q", len(chunk)),
            b"".join(struct.pack(">q", i) for i in columns[0]),
            b"\x00".join(map(text, columns[1])),  # country: char(2)
            *sized(columns[2]),
            *sized(columns[3]),
            b"".join(struct.pack(">i", 65536 if a is None else a) for a in columns[4]),
            *sized(columns[5]),
        ]
        out += struct.pack(">h", len(packed)) + b"".join(map(field, packed))
    return out + struct.pack(">h", -1)


def cut(data: bytes, positions: list[int]) -> Iterator[bytes]:
    """`data` in pieces, cut at `positions` (any order, repeats and ends allowed)."""
    start = 0
    for end in sorted({p % (len(data) + 1) for p in positions}):
        yield data[start:end]
        start = end
    yield data[start:]


def written(writer: str, blocks: Iterator[bytes]) -> bytes:
    out = io.BytesIO()
    if writer == "csv":
        write_csv(out, blocks, COLUMNS)
    else:
        write_json(out, blocks, as_array=writer == "json")
    return out.getvalue()


@settings(max_examples=300)
@given(rows=residents, positions=st.lists(st.integers(0, 10**6), max_size=8))
@pytest.mark.parametrize("writer", ["json", "ndjson"])
def test_json_writers_give_the_same_values_however_the_input_is_cut(
    writer: str, rows: list[tuple[object, ...]], positions: list[int]
) -> None:
    stream = copy_json_lines(rows)
    text = written(writer, cut(stream, positions)).decode()
    if writer == "json":
        objects = json.loads(text)
    else:
        objects = [json.loads(line) for line in text.split("\n") if line]  # NDJSON: \n alone
        assert text.count("\n") == len(rows)  # one line an object: no line end inside a value
    assert [tuple(o.values()) for o in objects] == rows
    assert all(list(o) == list(COLUMNS) for o in objects)


@settings(max_examples=300)
@given(rows=residents, positions=st.lists(st.integers(0, 10**6), max_size=8))
def test_csv_writer_gives_the_same_values_however_the_input_is_cut(
    rows: list[tuple[object, ...]], positions: list[int]
) -> None:
    stream = copy_csv(rows)
    text = written("csv", cut(stream, positions)).decode()
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[0] == list(COLUMNS)
    assert parsed[1:] == [["" if v is None else str(v) for v in row] for row in rows]


@settings(max_examples=300, deadline=None)  # the first example imports numpy and pyarrow
@given(
    rows=residents.map(lambda rows: sorted({r[1]: r for r in rows}.values(), key=lambda r: r[1])),
    positions=st.lists(st.integers(0, 10**6), max_size=8),
    chunk_rows=st.integers(1, 5),
)
def test_the_columnar_reader_gives_the_same_values_however_the_input_is_cut(
    rows: list[tuple[object, ...]], positions: list[int], chunk_rows: int
) -> None:
    # Each shard's packed stream (without the shard column, which the reader adds), in
    # chunks of a few rows, cut anywhere.
    rows = [r for r in rows if not any("\x00" in str(v) for v in r)]  # text holds no NUL
    shards = sorted({str(row[0]) for row in rows})
    streams = [
        (s, cut(copy_packed([r[1:] for r in rows if r[0] == s], chunk_rows), positions))
        for s in shards
    ]
    batches = list(record_batches(streams, COLUMNS))
    assert sum(b.num_rows for b in batches) == len(rows)
    found = [tuple(r.values()) for b in batches for r in b.to_pylist()]
    assert found == sorted(rows, key=lambda r: shards.index(str(r[0])))  # NULL, "" kept apart


def test_every_single_cut_of_a_row_of_backslashes() -> None:
    # The defect the property test is for, spelled out: a cut between the two backslashes
    # of each pair, at every position of a row made of them.
    row = ("db_us", 1, "US", "\\" * 7, '"\\"', 1, "\\\\ end \\")
    stream = copy_json_lines([row, row])
    for position in range(len(stream) + 1):
        text = written("json", cut(stream, [position]))
        assert [tuple(o.values()) for o in json.loads(text)] == [row, row], position


def test_a_stream_that_ends_inside_a_row_is_an_error_not_a_short_file() -> None:
    stream = copy_json_lines([("db_us", 1, "US", "Ann", None, None, None)])
    with pytest.raises(PipelineError, match="ended inside a row"):
        written("ndjson", iter([stream[:-1]]))


def test_the_columnar_reader_refuses_packed_rows_it_cannot_trust() -> None:
    rows: list[tuple[object, ...]] = [
        (1, "DE", "Ann", None, 30, None),
        (2, "DE", "Bob", "Male", None, "x"),
    ]

    def read(stream: bytes) -> int:
        return sum(b.num_rows for b in record_batches([("default", iter([stream]))], COLUMNS))

    assert read(copy_packed(rows, 1)) == 2
    for chunk_rows in (1, 2):  # ids that go back, across chunks and within one
        with pytest.raises(PipelineError, match="out of id order"):
            read(copy_packed(rows[::-1], chunk_rows))
    with pytest.raises(PipelineError, match="ended inside a row"):
        read(copy_packed(rows, 1)[:-3])
    one = copy_packed(rows[:1], 1)
    count = struct.pack(">hiq", 10, 8, 1)  # 10 fields (3 text columns' take 2), the count first
    assert count in one
    with pytest.raises(PipelineError, match="shard default: id has 1 values for 2 rows"):
        read(one.replace(count, struct.pack(">hiq", 10, 8, 2)))
    with pytest.raises(PipelineError, match="shard default: the server sent a chunk of -1 rows"):
        read(one.replace(count, struct.pack(">hiq", 10, 8, -1)))


def test_packed_text_is_read_the_same_on_either_side_of_the_split_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A column packed between zero bytes (char(n), uuid) is cut by numpy up to SPLIT_WIDTH
    # bytes a value and by pyarrow's compute past it. Chunks of values of every width around
    # it, with NULLs and empty strings among them (first, last, alone), are read each way
    # and both ways must agree with what was packed; one chunk sits exactly on the width,
    # one a byte past it.
    import pyarrow as pa

    def pack(chunk: list[str | None]) -> bytes:
        return b"\x00".join(b"\xff" if v is None else v.encode() for v in chunk)

    values: list[str | None] = [None, ""]
    for width in range(1, packed.SPLIT_WIDTH + 4):
        values += ["\u00e9" * (width // 2) + "a" * (width % 2)] * 3 + [None, ""]
    chunks = [
        values[s : s + n] for n in (1, 2, 3, 5, len(values)) for s in range(0, len(values), n)
    ]
    width = packed.SPLIT_WIDTH
    # 2 * width bytes with the separator: on the width; one more byte past it.
    on_width: list[str | None] = ["x" * width, "y" * (width - 1)]
    past: list[str | None] = ["x" * width, "y" * width]
    chunks += [on_width, past]
    assert len(pack(on_width)) == 2 * width and len(pack(past)) == 2 * width + 1
    for chunk in chunks:
        data = pack(chunk)
        arrays = []
        for split_width in (width, 0, 10**9):  # as shipped, always split, never split
            monkeypatch.setattr(packed, "SPLIT_WIDTH", split_width)
            array = packed.unpack(memoryview(data), pa.string(), len(chunk))
            array.validate(full=True)
            assert array.to_pylist() == chunk
            assert array.null_count == chunk.count(None)
            arrays.append(array)
        assert all(a.equals(arrays[0]) for a in arrays)


def test_packed_text_is_cut_the_same_without_pyarrows_private_compute_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The kernel comes from pyarrow._compute (skipping pyarrow.compute's import); a pyarrow
    # without that module must still cut the text, through pyarrow.compute.
    import pyarrow as pa
    import pyarrow.compute  # loaded before its source is hidden

    chunk = ["Łukasz Smith", None, "", "282 Main St, Apt 16", "x" * 40]
    data = b"\x00".join(b"\xff" if v is None else v.encode() for v in chunk)
    assert len(data) > packed.SPLIT_WIDTH * len(chunk)  # the kernel's side of the width
    expected = packed.unpack(memoryview(data), pa.string(), len(chunk))
    monkeypatch.setitem(sys.modules, "pyarrow._compute", None)
    with pytest.raises(ImportError):
        import pyarrow._compute
    array = packed.unpack(memoryview(data), pa.string(), len(chunk))
    assert array.to_pylist() == chunk
    assert array.equals(expected)


def sized_texts(values: list[str | None]) -> list[memoryview]:
    """A text column's two fields as extract/packed_sized.sql packs it: the sizes (-1:
    NULL), the values."""
    data = [b"" if v is None else v.encode() for v in values]
    sizes = [-1 if v is None else len(d) for v, d in zip(values, data, strict=True)]
    return [memoryview(b"".join(struct.pack(">i", n) for n in sizes)), memoryview(b"".join(data))]


def test_a_text_column_packed_with_its_sizes_is_read_value_for_value() -> None:
    # NULLs and empty strings first, last, alone and together; multibyte letters whose
    # bytes the sizes count; text holding what separators once were (a byte FF cannot be
    # in UTF-8, but a zero-width joiner or a lone space can).
    import pyarrow as pa

    values: list[str | None] = [None, "", "Łukasz", "", None, "李", " ", "a\u200db", None]
    chunks = [values[s : s + n] for n in (1, 2, 3, len(values)) for s in range(0, len(values), n)]
    chunks += [[None] * 3, [""] * 3, []]
    for chunk in chunks:
        (array,) = packed.unpack_all(sized_texts(chunk), ["name"], [pa.string()], len(chunk))
        array.validate(full=True)
        assert array.to_pylist() == chunk
        assert array.null_count == chunk.count(None)


def test_a_text_column_whose_sizes_do_not_fit_its_bytes_is_refused() -> None:
    import pyarrow as pa

    def read(sizes: bytes, data: bytes, rows: int) -> Any:
        fields = [memoryview(sizes), memoryview(data)]
        return packed.unpack_all(fields, ["address"], [pa.string()], rows)[0]

    sizes, data = (bytes(f) for f in sized_texts(["ab", None, "c"]))
    assert read(sizes, data, 3).to_pylist() == ["ab", None, "c"]
    for case in [
        (sizes, data[:-1], 3, "add up to 3 bytes where it holds 2"),  # a byte short
        (sizes, data + b"d", 3, "add up to 3 bytes where it holds 4"),  # a byte over
        (sizes[:8], data, 3, "sizes are not whole"),  # fewer sizes than rows
        (sizes + sizes[:4], data, 3, "sizes are not whole"),  # more
        (struct.pack(">ii", -2, 2), b"ab", 2, "sizes are not whole"),  # none is below -1
        (struct.pack(">ii", 5, -3), b"ab", 2, "sizes are not whole"),
        (b"", b"", -1, "a chunk of -1 rows"),
    ]:
        with pytest.raises(PipelineError, match=case[-1]):
            read(*case[:-1])
