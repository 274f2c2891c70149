"""The bulk NDJSON reader (pipeline.source_arrow_json) against Python's
(pipeline.source_json), without a database: for every file the bulk reader takes, both
must hand the rules exactly the same records (numbers, lines, fields and raw records);
every file it does not take it must refuse (NotSimple), so that Python's reader reads it.
The files cross the bulk reader's blocks (BLOCK_BYTES) and batches (BATCH_RECORDS)."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pytest

from pipeline.batch import BATCH_RECORDS
from pipeline.batches import batches
from pipeline.rules import Limits
from pipeline.source_arrow import BLOCK_BYTES
from pipeline.sources import open_source
from tests.test_source_arrow import refused_by_bulk, same_through_both

ANN = '{"id": "1", "country": "DE", "name": "Ann", "gender": "F", "age": "30", "address": "x"}'
BOB = '{"id": "2", "country": "US", "name": "Bob"}'

# Files the bulk reader takes.
SIMPLE = {
    "plain": ANN + "\n" + BOB + "\n",
    "integers": '{"id": 1, "country": "DE", "name": "A", "age": 30}\n{"id": -0, "name": "B",'
    ' "country": "US", "age": -7}\n{"id": 9223372036854775807, "country": "DE", "name": "C"}\n',
    "nulls, missing keys, an empty object": '{"id": null, "country": "DE", "name": "A", "age":'
    ' null}\n{"country": "US", "name": "B"}\n{}\n',
    "escapes": '{"country": "DE", "name": "A \\"B\\" \\\\ \\/ \\n \\t \\u00e9 \\ud83d\\ude00",'
    ' "address": "\\u0000x"}\n',
    "unicode as written": '{"country": "DE", "name": "Zoë Ångström 李", "address": "\u2028"}\n',
    "crlf": ANN + "\r\n" + BOB + "\r\n",
    "bom": "\ufeff" + ANN + "\n",
    "blank lines": "\n\n" + ANN + "\n\n" + BOB + "\n\n",
    "no line end at the end": ANN + "\n" + BOB,
    "keys in any order, spaces around": '{ "name" : "A" ,"country":"DE" , "id" : 3 }\n',
    "delete markers": '{"id": 1, "country": "DE", "name": "A", "_op": "delete"}\n'
    '{"id": 2, "country": "DE", "name": "B", "_op": "Upsert "}\n',
    "empty": "",
    "blank lines only": "\n\n\n",
}

# Files it must leave to Python's reader (which rejects a record, or the file, or reads
# what pyarrow cannot).
NOT_SIMPLE = {
    "not JSON": ANN + "\n{not json}\n",
    "an array": "[1, 2]\n",
    "a string": '"x"\n',
    "two objects on a line": ANN + " " + BOB + "\n",
    "an object over two lines": '{"id": "1",\n"country": "DE", "name": "A"}\n',
    "an unknown key": '{"id": "1", "country": "DE", "name": "A", "note": "x"}\n',
    "a key in another case": '{"id": "1", "country": "DE", "Name": "A"}\n',
    "a key with spaces": '{"id": "1", "country": "DE", " name": "A"}\n',
    "a key twice": '{"id": "1", "country": "DE", "name": "A", "name": "B"}\n',
    "a fraction": '{"id": "1", "country": "DE", "name": "A", "age": 30.5}\n',
    "an exponent": '{"id": 1e3, "country": "DE", "name": "A"}\n',
    "a boolean": '{"id": "1", "country": "DE", "name": true}\n',
    "a nested object": '{"id": "1", "country": "DE", "name": {"first": "A"}}\n',
    "a list": '{"id": "1", "country": "DE", "name": ["A"]}\n',
    "NaN": '{"id": "1", "country": "DE", "name": "A", "age": NaN}\n',
    "an integer over int64": '{"id": 9223372036854775808, "country": "DE", "name": "A"}\n',
    "integers and text in one column": '{"id": 1, "country": "DE", "name": "A"}\n'
    '{"id": "2", "country": "DE", "name": "B"}\n',
    "a lone surrogate": '{"id": "1", "country": "DE", "name": "\\ud800"}\n',
    "a lone low surrogate": '{"id": "1", "country": "DE", "name": "\\udc00x"}\n',
    "a raw tab": '{"id": "1", "country": "DE", "name": "A\tB"}\n',
    "a tab between tokens": '{"id": "1",\t"country": "DE", "name": "A"}\n',
    "a carriage return alone": ANN + "\r" + BOB + "\n",
    "a white space only line": ANN + "\n   \n",
    "a line starting with a space": " " + ANN + "\n",
    "a blank line of CRLF": ANN + "\r\n\r\n" + BOB + "\r\n",
    "not UTF-8": '{"id": "1", "country": "DE", "name": "A\xe9"}\n',
    "a country longer than any": '{"id": "1", "country": "' + "D" * 101 + '", "name": "A"}\n',
    "a name null in every record": '{"id": "1", "country": "DE", "name": null}\n',
    "trailing text": ANN + " x\n",
    # JSON that Python's decoder refuses, and pyarrow must too (not read it its own way)
    "a leading zero": '{"id": 01, "country": "DE", "name": "A"}\n',
    "a trailing comma": '{"id": "1", "country": "DE", "name": "A",}\n',
    "a comment": ANN + " // note\n",
    "single quotes": "{'id': '1', 'country': 'DE', 'name': 'A'}\n",
    "a bad escape": '{"id": "1", "country": "DE", "name": "\\x41"}\n',
}


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1") if "\xe9" in text else text.encode("utf-8"))
    return path


@pytest.mark.parametrize("text", SIMPLE.values(), ids=list(SIMPLE))
def test_the_bulk_reader_gives_what_pythons_reader_gives(tmp_path: Path, text: str) -> None:
    found = same_through_both(_write(tmp_path / "f.ndjson", text))
    assert len(found) == text.count("{") - text.count('{"first')  # every object, once


def test_the_fields_lines_and_raw_record_are_the_files(tmp_path: Path) -> None:
    text = '\n{"name": "A", "id": 7, "country": "de", "_op": "delete"}\n'
    (row,) = same_through_both(_write(tmp_path / "f.ndjson", text))
    raw = {"name": "A", "id": 7, "country": "de", "_op": "delete"}
    assert row == (1, 2, ("7", "de", "A", None, None, None), raw)


@pytest.mark.parametrize("text", NOT_SIMPLE.values(), ids=list(NOT_SIMPLE))
def test_what_the_bulk_reader_cannot_take_is_left_to_python(tmp_path: Path, text: str) -> None:
    refused_by_bulk(_write(tmp_path / "f.ndjson", text))


def test_limits_are_left_to_python_when_near(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.ndjson", ANN.replace('"x"', '"' + "x" * 50 + '"') + "\n")
    same_through_both(path)
    refused_by_bulk(path, Limits(max_field=40))
    line = len(path.read_bytes())  # the line with its end: Python's limit counts it
    same_through_both(path, Limits(max_line=line, max_field=60))
    refused_by_bulk(path, Limits(max_line=line - 1, max_field=60))


def test_a_country_over_a_field_limit_below_any_countrys_is_left_to_python(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "f.ndjson", '{"country": "Germany", "name": "A"}\n')
    same_through_both(path)
    refused_by_bulk(path, Limits(max_field=5))


def test_a_line_longer_than_a_block_is_left_to_python_past_its_limit(tmp_path: Path) -> None:
    name = "n" * (2 * BLOCK_BYTES)
    path = _write(tmp_path / "f.ndjson", ANN.replace('"Ann"', f'"{name}"') + "\n" + BOB + "\n")
    big = Limits(max_line=3 * BLOCK_BYTES, max_field=3 * BLOCK_BYTES, max_record=3 * BLOCK_BYTES)
    assert len(same_through_both(path, big)) == 2
    refused_by_bulk(path)  # the default limits: Python's reader rejects the record


def test_a_column_may_change_kind_between_blocks(tmp_path: Path) -> None:
    # Ages as integers in the first blocks, as text in the last: each block is parsed as
    # it comes.
    head = '{{"id": {0}, "country": "DE", "name": "A", "age": {1}}}'
    lines = [head.format(i, i % 90) for i in range(1, 30_001)]
    lines += [head.format(f'"{i}"', f'"x{i}"') for i in range(30_001, 30_101)]
    path = _write(tmp_path / "f.ndjson", "\n".join(lines) + "\n")
    found = same_through_both(path)
    assert len(found) == 30_100 and found[-1][2][4] == "x30100"


def test_a_batch_holds_at_most_batch_records_however_short_they_are(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.ndjson", '{"country": "DE", "name": "A"}\n' * (3 * BATCH_RECORDS))
    sizes = [len(b) for b in batches(open_source(path))]
    assert max(sizes) == BATCH_RECORDS and sum(sizes) == 3 * BATCH_RECORDS


@pytest.mark.parametrize("column", ["name", "address", "id"])
def test_a_batch_is_nul_free_unless_a_value_holds_a_nul(tmp_path: Path, column: str) -> None:
    """The rules skip their NUL search in a batch said to be free of NULs: only the batch
    whose record has a \\u0000 escape may say otherwise, wherever the value sits."""
    text = '{{"id": "{0}", "country": "DE", "name": "A{0}", "address": "{0} Main St"}}'
    lines = [text.format(i) for i in range(1, 2 * BATCH_RECORDS + 1)]
    marked = BATCH_RECORDS + 7  # in the second batch, neither its first nor its last record
    lines[marked - 1] = lines[marked - 1].replace(f'"{column}": "', f'"{column}": "x\\u0000')
    path = _write(tmp_path / "f.ndjson", "\n".join(lines) + "\n")
    found = list(batches(open_source(path)))
    assert len(found) > 1
    holding = [marked in b.records.to_pylist() for b in found]
    assert [not b.nul_free for b in found] == holding
    batch = found[holding.index(True)]
    assert "\0" in batch.fields[column][batch.records.to_pylist().index(marked)].as_py()


def _generated(rng: random.Random, count: int, crlf: bool) -> str:
    """Records of many lengths, integers or text, some blank lines between."""
    end = "\r\n" if crlf else "\n"
    out = []
    for i in range(1, count + 1):
        record = {
            "id": str(i),
            "country": rng.choice(["DE", "US", "usa", "XX", " de "]),
            "name": rng.choice(["Ann", "Zoë Ångström", 'Bob "the" Builder', "Lee\\Li", None]),
            "age": str(i % 99),
            "address": "x" * rng.randrange(0, 400) + rng.choice(["", "\n", "\u00e9", "\t"]),
        }
        if rng.random() < 0.1:
            del record["gender" if "gender" in record else "address"]
        out.append(json.dumps(record, ensure_ascii=rng.random() < 0.5) + end)
        if rng.random() < 0.01:
            out.append("\n")
    return "".join(out)


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_records_across_every_block_and_batch_are_the_same(
    tmp_path: Path, crlf: bool, gz: bool
) -> None:
    text = _generated(random.Random(7), 3 * BATCH_RECORDS, crlf).encode()
    assert len(text) > 3 * BLOCK_BYTES  # several blocks, whose ends fall anywhere
    path = tmp_path / ("f.ndjson.gz" if gz else "f.ndjson")
    path.write_bytes(gzip.compress(text) if gz else text)
    found = same_through_both(path)
    assert [r[0] for r in found] == list(range(1, 3 * BATCH_RECORDS + 1))


@pytest.mark.parametrize(
    "size",
    [BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, 2 * BLOCK_BYTES + 1],
    ids=["under", "at", "over", "twice"],
)
def test_lines_around_a_blocks_size_are_parsed_whole(tmp_path: Path, size: int) -> None:
    # pyarrow parses each block in one piece: lines (`size` bytes with the line end) of a
    # block's size, one byte either side, and over twice it (which pyarrow would refuse in
    # smaller pieces), among short ones.
    head = '{"id": "7", "country": "DE", "name": "'
    short = (BOB + "\n") * 200
    long = head + "x" * (size - len(head) - len('"}\n')) + '"}\n'
    text = short + long + short + long.replace("x", "z") + short
    big = Limits(max_line=4 * BLOCK_BYTES, max_field=4 * BLOCK_BYTES)
    found = same_through_both(_write(tmp_path / "f.ndjson", text), big)
    assert [len(r[2][2]) for r in found if r[2][0] == "7"] == [len(long) - len(head) - 3] * 2
    assert len(found) == 602


def test_a_line_ending_exactly_at_a_block_end_is_whole(tmp_path: Path) -> None:
    head = '{"id": "1", "country": "DE", "name": "'
    filler = BLOCK_BYTES - len(head) - len('"}\n')  # the first block ends with its "\n"
    text = head + "x" * filler + '"}\n' + BOB + "\n"
    big = Limits(max_line=2 * BLOCK_BYTES, max_field=2 * BLOCK_BYTES)
    found = same_through_both(_write(tmp_path / "f.ndjson", text), big)
    assert [(r[0], r[1]) for r in found] == [(1, 1), (2, 2)]
