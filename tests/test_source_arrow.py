"""The bulk CSV reader (pipeline.source_arrow) against Python's (pipeline.source_csv), without
a database: for every file the bulk reader takes, both must hand the rules exactly the same
records (numbers, lines, fields and raw records); every file it does not take it must refuse
(NotSimple), so that Python's reader reads it. The files cross the bulk reader's blocks
(BLOCK_BYTES) and Python's batches (BATCH_RECORDS)."""

from __future__ import annotations

import contextlib
import csv
import gzip
import random
from pathlib import Path
from typing import Any

import pytest

from pipeline import source_arrow
from pipeline.batch import BATCH_RECORDS
from pipeline.batches import BATCH_CHARS, batches
from pipeline.columns import FIELDS
from pipeline.rules import Limits
from pipeline.source_arrow import BLOCK_BYTES, MAX_COLUMNS, NotSimple
from pipeline.sources import SourceError, open_source

HEADER = "id,country,name,gender,age,address\n"
Row = tuple[int, int | None, tuple[Any, ...], Any]


def through(path: Path, bulk: bool, limits: Limits | None = None) -> list[Row]:
    """Every record as the rules get it: (number, line, fields, raw)."""
    source = open_source(path, limits=limits or Limits(), arrow=bulk)
    found: list[Row] = []
    for batch in batches(source):
        assert not batch.early or not bulk  # the bulk reader refuses no record itself
        raws = batch.raws(list(range(len(batch))))
        fields = [batch.fields[f].to_pylist() for f in FIELDS]
        numbers, lines = batch.records.to_pylist(), batch.lines.to_pylist()
        for i in range(len(batch)):
            found.append((numbers[i], lines[i], tuple(f[i] for f in fields), raws[i]))
        found.extend((e[0], e[1], (e[2].value,), e[4]) for e in batch.early)
    return sorted(found, key=lambda r: r[0])


def same_through_both(path: Path, limits: Limits | None = None) -> list[Row]:
    bulk = through(path, True, limits)
    assert bulk == through(path, False, limits)
    return bulk


def refused_by_bulk(path: Path, limits: Limits | None = None) -> None:
    with pytest.raises(NotSimple):
        through(path, True, limits)
    with contextlib.suppress(SourceError):  # Python's reader takes it: records, rejects or
        through(path, False, limits)  # a file error


# Files the bulk reader takes: quoting as RFC 4180 has it, any delimiter, CRLF, a BOM, blank
# lines, missing optional columns and extra ones, no line end at the end.
SIMPLE = {
    "plain": HEADER + "1,DE,Ann,F,30,Main St 1\n2,US,Bob,M,40,\n",
    "quoted": HEADER + '1,DE,"Ann ""Nan"" Lee",F,30,"Main St, 1"\n2,US,"",,"",""\n',
    "newline in a field": HEADER + '1,DE,Ann,F,30,"Line 1\nLine 2\n\nLine 4"\n2,US,Bob,M,4,x\n',
    "crlf": HEADER.replace("\n", "\r\n") + '1,DE,Ann,F,30,"a\r\nb"\r\n2,US,Bob,M,4,x\r\n',
    "bom": "\ufeff" + HEADER + "1,DE,Ann,F,30,x\n",
    "blank lines": HEADER + "\n\n1,DE,Ann,F,30,x\n\n\r\n2,US,Bob,M,4,x\n\n",
    "semicolons": HEADER.replace(",", ";") + '1;DE;"Ann; Lee";F;30;x\n',
    "tabs": HEADER.replace(",", "\t") + "1\tDE\tAnn, Lee\tF\t30\tx\n",
    "no line end": HEADER + "1,DE,Ann,F,30,x",
    "columns reordered, some missing, some unknown": "Name, COUNTRY ,note\nAnn,DE,hi\n",
    "white space and unicode": HEADER + "\u00a0 7 ,  de ,\u200bZoë\u3000, f ,+22 ,  \n",
    "header only": HEADER,
    "a doubled quote at a quoted field's end": HEADER + '1,DE,"A""",F,30,""""\n',
    "a byte order mark opening a later record": HEADER + "1,DE,Ann,F,30,x\n\ufeff2,US,B,M,4,\n",
}

# Files it must leave to Python's reader.
NOT_SIMPLE = {
    "a quote inside an unquoted field": HEADER + '1,DE,Ann "Nan" Lee,F,30,x\n',
    "text after a closing quote": HEADER + '1,DE,"Ann" Lee,F,30,x\n',
    "a carriage return alone": HEADER + "1,DE,Ann\rLee,F,30,x\n",
    "a NUL": HEADER + "1,DE,Ann\0,F,30,x\n",
    "too many fields": HEADER + "1,DE,Ann,F,30,x,extra\n",
    "too few fields": HEADER + "1,DE,Ann\n",
    "white space only line": HEADER + "1,DE,Ann,F,30,x\n   \n",
    "an open quote at the end": HEADER + '1,DE,"Ann,F,30,x\n2,US,Bob,M,4,y\n',
    "not UTF-8": HEADER + "1,DE,Ann\xe9,F,30,x\n",
    "a country longer than any": HEADER + "1," + "D" * 101 + ",Ann,F,30,x\n",
    "no header line end in the first block": "id,country,name" + ",x" * BLOCK_BYTES,
    # pyarrow drops a byte order mark opening its input: a block's first record is one.
    "a byte order mark opening the first record": HEADER + "\ufeff1,DE,Ann,F,30,x\n",
    "a file's byte order mark, and another": "\ufeff" + HEADER + "\ufeffAnn,DE,Ann,F,30,x\n",
}


@pytest.mark.parametrize("text", SIMPLE.values(), ids=list(SIMPLE))
def test_the_bulk_reader_gives_what_pythons_reader_gives(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode("latin-1" if "\xe9" in text else "utf-8"))
    same_through_both(path)


def test_the_raw_record_and_fields_are_the_files(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text('Name,country,id,note\n"A, B",de,7,hi\n', encoding="utf-8")
    (row,) = same_through_both(path)
    assert row == (1, 2, ("7", "de", "A, B", "", "", ""), {"name": "A, B", "country": "de",
                   "id": "7", "note": "hi"})  # fmt: skip


@pytest.mark.parametrize("text", NOT_SIMPLE.values(), ids=list(NOT_SIMPLE))
def test_what_the_bulk_reader_cannot_take_is_left_to_python(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode("latin-1") if "\xe9" in text else text.encode("utf-8"))
    refused_by_bulk(path)


def test_limits_are_left_to_python_when_near(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(HEADER + "1,DE,Ann,F,30," + "x" * 50 + "\n", encoding="utf-8")
    same_through_both(path)
    refused_by_bulk(path, Limits(max_field=40))
    refused_by_bulk(path, Limits(max_line=60, max_field=60))
    refused_by_bulk(path, Limits(max_record=60, max_field=60))


def test_a_byte_order_mark_opening_a_later_batch_is_left_to_python(tmp_path: Path) -> None:
    """Each block is parsed on its own: a record that starts one must keep its mark."""
    records = [f"{i},DE,N{i},F,30,x\n" for i in range(1, 2 * BATCH_RECORDS + 1)]
    records[BATCH_RECORDS] = "\ufeff" + records[BATCH_RECORDS]
    path = tmp_path / "f.csv"
    path.write_text(HEADER + "".join(records), encoding="utf-8")
    refused_by_bulk(path)
    rows = through(path, False)
    assert rows[BATCH_RECORDS][2][0] == "\ufeff" + str(BATCH_RECORDS + 1)


def test_a_record_without_an_id_column_refused_by_the_slow_checks(tmp_path: Path) -> None:
    """No id column, and a record the slow checks refuse: a reject, not an IndexError."""
    path = tmp_path / "f.csv"
    path.write_text("country,name\nDE,xxx\nDE,y\n", encoding="utf-8")
    limits = Limits(max_field=2)
    refused_by_bulk(path, limits)
    first, second = through(path, False, limits)
    assert first[:3] == (1, 2, ("too_large",))
    assert second[:3] == (2, 3, ("", "DE", "y", "", "", ""))


def test_the_header_is_read_the_same_after_another_file(tmp_path: Path) -> None:
    """The csv module's field limit is the process's: a file read before must not change
    how the next one's header reads (a header cell longer than the record limit)."""
    path = tmp_path / "f.csv"
    path.write_text("country,name," + "n" * 200 + "\nDE,Ann,x\n", encoding="utf-8")
    limits = Limits(max_line=1000, max_record=100, max_field=100)
    before = csv.field_size_limit()
    try:
        for _ in range(2):  # the first read sets the limit to max_record
            for bulk in (False, True):
                assert [r[2][1:3] for r in through(path, bulk, limits)] == [("DE", "Ann")]
    finally:
        csv.field_size_limit(before)


def test_a_line_one_character_over_its_limit_is_left_to_python(tmp_path: Path) -> None:
    # The limit counts the line's end, as Python's reader counts it: the first line of a
    # block and the header included.
    limits = Limits(max_line=40, max_record=80, max_field=40)
    row = "1,DE,Ann,F,30," + "x" * 25 + "\n"
    assert len(row) == 40
    path = tmp_path / "f.csv"
    path.write_text(HEADER + row, encoding="utf-8")
    same_through_both(path, limits)
    path.write_text(HEADER + row.replace("x\n", "xx\n"), encoding="utf-8")
    refused_by_bulk(path, limits)
    header = "id,country,name," + "n" * 23 + "\n"
    path.write_text(header + "1,DE,Ann,\n", encoding="utf-8")
    refused_by_bulk(path, Limits(max_line=len(header) - 1, max_field=10))
    same_through_both(path, Limits(max_line=len(header), max_field=10))


def test_a_batch_holds_at_most_batch_records_however_short_they_are(tmp_path: Path) -> None:
    # A few MB of one-character records: a batch stays BATCH_RECORDS long, memory bounded.
    path = tmp_path / "f.csv"
    count = 25 * BATCH_RECORDS
    path.write_text("country,name\n" + ",\n" * count, encoding="utf-8")
    sizes = [len(b) for b in batches(open_source(path))]
    assert max(sizes) == BATCH_RECORDS and sum(sizes) == count
    assert len(same_through_both(path)) == count


def test_a_header_of_many_columns_is_left_to_python(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    extra = "".join(f",c{i}" for i in range(MAX_COLUMNS))
    path.write_text(HEADER.rstrip("\n") + extra + "\n1,DE,A,F,1,x" + "," * MAX_COLUMNS + "\n")
    refused_by_bulk(path)


def _generated(rng: random.Random, count: int, crlf: bool, longest: int = 400) -> str:
    """Records of many lengths (addresses up to `longest`), some quoted over several lines,
    some blank lines."""
    end = "\r\n" if crlf else "\n"
    out = [HEADER.replace("\n", end)]
    for i in range(1, count + 1):
        name = rng.choice(["Ann", "Zoë Ångström", '"Bob ""the"" Builder"', '"Lee, Li"'])
        address = "x" * rng.randrange(0, longest)
        if rng.random() < 0.05:
            address = f'"{address}{end}second line{end}"'
        out.append(f"{i},{rng.choice(['DE', 'US', 'usa', 'XX'])},{name},F,{i % 99},{address}{end}")
        if rng.random() < 0.01:
            out.append(end)
    return "".join(out)


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_records_across_every_block_and_batch_are_the_same(
    tmp_path: Path, crlf: bool, gz: bool
) -> None:
    text = _generated(random.Random(7), 3 * BATCH_RECORDS, crlf).encode()
    assert len(text) > 3 * BLOCK_BYTES  # several blocks, whose ends fall anywhere
    path = tmp_path / ("f.csv.gz" if gz else "f.csv")
    path.write_bytes(gzip.compress(text) if gz else text)
    found = same_through_both(path)
    assert [r[0] for r in found] == list(range(1, 3 * BATCH_RECORDS + 1))


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_short_records_of_several_batches_a_block_are_the_same(tmp_path: Path, crlf: bool) -> None:
    # A block of short records holds more than a batch: the rest of the block stays pending
    # with the positions of its newlines and quotes found before, which the next batch uses.
    text = _generated(random.Random(11), 6 * BATCH_RECORDS, crlf, longest=30).encode()
    # two batches a block at least
    assert len(text) / (6 * BATCH_RECORDS) < BLOCK_BYTES / (2 * BATCH_RECORDS)
    path = tmp_path / "f.csv"
    path.write_bytes(text)
    sizes = [len(b) for b in batches(open_source(path))]
    assert len(sizes) >= 6 and max(sizes) <= BATCH_RECORDS  # blank lines are no records
    found = same_through_both(path)
    assert [r[0] for r in found] == list(range(1, 6 * BATCH_RECORDS + 1))
    assert sum("\n" in r[3]["address"] for r in found) > 100  # quoted over lines, all along


def test_a_record_ending_exactly_at_a_block_end_is_whole(tmp_path: Path) -> None:
    line = "1,DE,Ann,F,30,"
    filler = BLOCK_BYTES - len(HEADER) - len(line) - 1  # the first block ends with its "\n"
    text = HEADER + line + "x" * filler + "\n" + '2,DE,"a\nb",F,1,y\n'
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    found = same_through_both(path, Limits(max_line=2 * BLOCK_BYTES, max_record=2 * BLOCK_BYTES,
                                           max_field=2 * BLOCK_BYTES))  # fmt: skip
    assert [(r[0], r[1]) for r in found] == [(1, 2), (2, 3)]


@pytest.mark.parametrize(
    "size",
    [BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 2 * BLOCK_BYTES + 1],
    ids=["under", "at", "over", "twice"],
)
def test_records_around_the_block_size_are_parsed_whole(tmp_path: Path, size: int) -> None:
    # pyarrow parses a block in one piece of its size and a byte: records (`size` bytes with
    # the line end) of a block's size, one byte either side, and over twice it, among short
    # ones, some quoted over two lines.
    line = "7,DE,Ann,F,30,"
    short = ['1,DE,Ann,F,30,"a\nb"\n'] * 100 + ["2,US,Bob,M,40,y\n"] * 100
    text = HEADER + "".join(short) + line + "x" * (size - len(line) - 1) + "\n"
    text += "".join(short) + line + "z" * (size - len(line) - 1) + "\n" + "".join(short)
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8")
    big = 4 * BLOCK_BYTES
    found = same_through_both(path, Limits(max_line=big, max_record=big, max_field=big))
    assert [len(r[3]["address"]) for r in found if r[2][0] == "7"] == [size - len(line) - 1] * 2
    assert len(found) == 3 * len(short) + 2


def test_the_bulk_reader_is_what_loads_a_plain_csv(tmp_path: Path) -> None:
    # The load takes the bulk reader for plain CSV (not only when tests ask for it).
    path = tmp_path / "f.csv"
    path.write_text(HEADER + "1,DE,Ann,F,30,x\n", encoding="utf-8")
    source = open_source(path)
    assert source.bulk
    assert isinstance(source_arrow.ArrowCsv(source), source_arrow.ArrowCsv)
    assert open_source(tmp_path / "f.ndjson").bulk  # pipeline.source_arrow_json
    assert not open_source(tmp_path / "f.json").bulk
    assert not open_source(path, encoding="latin-1").bulk


def test_a_python_batch_stops_at_batch_chars_before_batch_records(tmp_path: Path) -> None:
    # Records of 4,000 characters: BATCH_CHARS is reached long before BATCH_RECORDS.
    path = tmp_path / "f.ndjson"
    count = 3 * BATCH_CHARS // 4_000
    lines = (f'{{"id": {i}, "country": "DE", "name": "N", "address": "{"x" * 4_000}"}}\n'
             for i in range(1, count + 1))  # fmt: skip
    path.write_text("".join(lines), encoding="utf-8")
    found = list(batches(open_source(path, arrow=False)))
    assert len(found) > 2 and max(len(b) for b in found) < BATCH_RECORDS
    numbers = [n for b in found for n in b.records.to_pylist()]
    assert numbers == list(range(1, count + 1))
