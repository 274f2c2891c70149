"""The readers of incoming files (pipeline.sources), without a database: what they yield for
records that cross their buffers' boundaries, what they refuse and why, and, for any bytes
at all, never anything but records, rejects with a reason, or a one-line SourceError."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import batches as batches_module
from pipeline import sources
from pipeline.bounded import BLOCK
from pipeline.errors import ConfigError
from pipeline.rules import Limits, parse_rules
from pipeline.sources import Record, SourceError, open_source, regular_file_error
from tests.conftest import PROJECT

HEADER = "id,country,name,gender,age,address\n"
REASONS = {"malformed_record", "too_large", "invalid_text", "invalid_country"}


def six(record: sources.Record) -> tuple[str | None, ...] | None:
    """A record's six fields (its values also hold the op column, last)."""
    return record.values[:6] if record.values is not None else None


def read(path: Path, limits: Limits | None = None, encoding: str = "utf-8") -> list[Record]:
    source = open_source(path, encoding, limits or Limits())
    return list(source.records())


def problems(records: list[Record]) -> list[tuple[int | None, str]]:
    return [(r.line, r.reason) for r in records if r.values is None]


def test_csv_line_numbers_stay_right_after_megabytes_of_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    blank = 3 * BLOCK
    path.write_text(HEADER + "1,DE,A\n" + "\n" * blank + "2,XX,B,F,1,x,extra\n3,DE,C\n")
    records = read(path)
    assert [r.number for r in records] == [1, 2, 3]
    assert [r.line for r in records] == [2, 3 + blank, 4 + blank]


def test_ndjson_line_numbers_stay_right_after_megabytes_of_crlf_blank_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.ndjson"
    blank = BLOCK + 7  # odd: a \r\n falls across a read
    good = json.dumps({"country": "DE", "name": "A"})
    path.write_text(good + "\r\n" + "\r\n" * blank + good + "\r\n")
    assert [r.line for r in read(path)] == [1, blank + 2]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_csv_records_across_every_read_boundary_are_whole(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "many.csv"
    row = "{0},DE,Name {0},F,30,Street {0}" + ending
    count = 3 * BLOCK // len(row.format(100_000))
    path.write_text(HEADER.replace("\n", ending) + "".join(row.format(i) for i in range(count)))
    records = read(path)
    assert len(records) == count
    assert all(six(r) == (str(i), "DE", f"Name {i}", "F", "30", f"Street {i}")
               for i, r in enumerate(records))  # fmt: skip
    assert records[-1].line == count + 1


def test_json_records_across_every_read_boundary_are_whole(tmp_path: Path) -> None:
    path = tmp_path / "many.json"
    items = [{"id": i, "country": "DE", "name": f"N{i}", "age": 30} for i in range(60_000)]
    # Top-level numbers too: one cut by a read must not come out as two.
    path.write_text(json.dumps(items + list(range(10**9, 10**9 + 200_000))))
    records = read(path)
    assert len(records) == 260_000
    assert [r.values[0] for r in records[:60_000] if r.values] == [str(i) for i in range(60_000)]
    assert {r.problem for r in records[60_000:]} == {"expected an object, got int"}


def test_a_json_record_over_the_limit_is_skipped_and_the_array_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    big = {"country": "DE", "name": "x" * 5000, "address": ["]]", "{", '"', "\\"]}
    path.write_text(json.dumps([big, {"country": "DE", "name": "ok"}]))
    records = read(path, Limits(max_record=1000, max_field=100))
    assert [(r.reason if r.values is None else r.values[2]) for r in records] == [
        "too_large",
        "ok",
    ]
    assert len(records[0].raw) < 300


def test_limits_apply_to_each_format(tmp_path: Path) -> None:
    limits = Limits(max_line=80, max_record=80, max_field=20)
    long = "y" * 30
    csv_rows = [f"1,DE,{long},F,1,x", "2,DE," + "z" * 90 + ",F,1,x", "3,DE,ok,F,1,x"]
    (tmp_path / "l.csv").write_text(HEADER + "\n".join(csv_rows) + "\n")
    rows = [{"country": "DE", "name": long}, {"country": "DE", "name": "z" * 90}]
    rows.append({"country": "DE", "name": "ok"})
    (tmp_path / "l.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "l.json").write_text(json.dumps(rows))
    for name in ("l.csv", "l.ndjson", "l.json"):
        records = read(tmp_path / name, limits)
        assert [r.reason for r in records if r.values is None] == ["too_large"] * 2, name
        assert [r.values[2] for r in records if r.values] == ["ok"], name


def test_lone_surrogates_are_invalid_text_and_their_raw_record_is_writable(
    tmp_path: Path,
) -> None:
    (tmp_path / "s.ndjson").write_text('{"country": "DE", "name": "\\ud800"}\n')
    (tmp_path / "s.json").write_text('[{"country": "DE", "name": "\\udfff"}]')
    for name in ("s.ndjson", "s.json"):
        (record,) = read(tmp_path / name)
        assert record.reason == "invalid_text"
        json.dumps(record.raw, ensure_ascii=False).encode("utf-8")  # what the rejects file does


def test_numbers_in_json_are_kept_as_written(tmp_path: Path) -> None:
    path = tmp_path / "n.json"
    path.write_text('[{"id": 1e3, "country": "DE", "name": "A", "age": 22.0}, '
                    '{"id": 12, "country": "DE", "name": "B", "age": NaN}]')  # fmt: skip
    assert [(r.values[0], r.values[4]) for r in read(path) if r.values] == [
        ("1e3", "22.0"),
        ("12", "NaN"),
    ]


def test_unknown_columns_are_capped_and_shown_printable(tmp_path: Path) -> None:
    path = tmp_path / "k.ndjson"
    record = {f"\x1b[31mk{i}": 0 for i in range(500)} | {"country": "DE", "name": "A"}
    path.write_text(json.dumps(record) + "\n")
    source = open_source(path)
    list(source.records())
    assert len(source.unknown_columns) == sources.UNKNOWN_COLUMNS_KEPT + 1
    assert "…" in source.unknown_columns
    assert all(name.isprintable() for name in source.unknown_columns)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert regular_file_error(fifo) == "not a regular file (a FIFO); only regular files are loaded"
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            read(fifo)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=open_it, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert isinstance(outcome[0], SourceError)
    assert "not a regular file" in str(outcome[0])


@pytest.mark.parametrize("encoding", ["utf-16", "punycode", "unicode_escape", "utf-7"])
def test_encodings_that_fail_oddly_are_a_source_error(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(HEADER.encode() + b"1,DE,\\u00e9\xe9+-,F,1,x\\")
    try:
        records = read(path, encoding=encoding)
    except SourceError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(r.values is not None or r.reason in REASONS for r in records)


# -- any bytes at all ------------------------------------------------------------------------

STRUCTURAL = st.sampled_from(
    ['{"', '"}', "[", "]", "{", "}", ",", ":", '"', "\\", "\\u", "d800", "\n", "\r", " ",
     "country", "name", "id", "DE", "1e3", "9" * 50, "\u3000", "\ufeff", "\x00",
     '"""'])  # fmt: skip
TEXTS = st.lists(st.one_of(STRUCTURAL, st.text(max_size=8)), max_size=60).map("".join)
BYTES = st.one_of(
    st.binary(max_size=300),
    TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")),
    TEXTS.map(lambda t: (HEADER + t).encode("utf-8", "surrogatepass")),
    TEXTS.map(lambda t: ("[" + t).encode("utf-8", "surrogatepass")),
)


def check_any(path: Path, data: bytes, limits: Limits, encoding: str = "utf-8") -> None:
    path.write_bytes(data)
    try:
        records = read(path, limits, encoding)
    except SourceError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    for number, record in enumerate(records, start=1):
        assert record.number == number
        if record.values is None:
            assert record.reason in REASONS and record.problem
            json.dumps(record.raw, ensure_ascii=False).encode("utf-8")
        else:
            assert len(record.values) == len(sources.READ)
            assert all(v is None or isinstance(v, str) for v in record.values)


SMALL = Limits(max_line=40, max_record=40, max_field=10, max_depth=3)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".ndjson"])
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=BYTES, small=st.booleans())
def test_any_bytes_are_records_rejects_or_one_source_error(
    tmp_path: Path, suffix: str, data: bytes, small: bool
) -> None:
    check_any(tmp_path / f"any{suffix}", data, SMALL if small else Limits())


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=BYTES, encoding=st.sampled_from(["utf-16", "latin-1", "unicode_escape", "utf-7"]))
# unicode_escape warns of an invalid escape ("\ "); Python shows no DeprecationWarning raised
# outside __main__, and pytest's filterwarnings = error would make it an exception here.
@pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")
def test_any_bytes_in_any_encoding_are_records_rejects_or_one_source_error(
    tmp_path: Path, data: bytes, encoding: str
) -> None:
    check_any(tmp_path / "any.csv", data, Limits(), encoding)
    check_any(tmp_path / "any.ndjson", data, Limits(), encoding)


def test_limits_are_read_from_the_rules_file() -> None:
    rules = parse_rules(Path("rules.yaml"), {"limits": {"max_line": 100, "max_field": 10}})
    assert rules.limits == Limits(max_line=100, max_record=Limits().max_record, max_field=10)
    assert parse_rules(Path("rules.yaml"), {}).limits == Limits()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"max_line": 0}, "limits.max_line: expected a positive integer"),
        ({"max_line": "1M"}, "limits.max_line: expected an integer"),
        ({"max_lines": 5}, "limits.max_lines: unknown key"),
        ({"max_field": 10, "max_record": 5}, "limits.max_field: cannot be larger"),
    ],
)
def test_bad_limits_are_a_configuration_error_naming_the_key(
    section: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_rules(Path("rules.yaml"), {"limits": section})


@pytest.mark.parametrize("backslashes", [0, 1, 2, 3])
def test_a_skipped_json_record_ends_at_its_real_end_whatever_its_escapes(
    tmp_path: Path, backslashes: int
) -> None:
    # Escaped quotes and backslashes fall across every read boundary of the skip.
    text = ("\\" * backslashes + '"' + "]}") * (BLOCK // 2)
    path = tmp_path / "escapes.json"
    path.write_text(json.dumps([{"name": text}, {"country": "DE", "name": "ok"}]))
    records = read(path)
    assert [r.reason if r.values is None else r.values[2] for r in records] == ["too_large", "ok"]


@pytest.mark.parametrize("char", ["é", "€", "\U0001f600"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_a_long_line_of_multibyte_characters_is_cut_between_characters(
    tmp_path: Path, char: str, ending: str
) -> None:
    # The line guard cuts bytes beneath the decoder: never inside a character.
    path = tmp_path / "wide.csv"
    long = "1,DE,A,F,1," + char * (5 * BLOCK // len(char.encode()) + 3)
    path.write_text((HEADER + long + "\n" + "2,DE,ok,F,1,x\n").replace("\n", ending))
    records = read(path)
    assert [(r.line, r.reason if r.values is None else r.values[2]) for r in records] == [
        (2, "too_large"),
        (3, "ok"),
    ]


# -- what a load reads from a file: records, rejects and file errors ----------------------------
# The load's own tests (test_load.py) keep one case of each family through the CLI and two
# shards; the cases themselves are the readers' and are checked here, record by record.

SHIPPED_LIMITS = parse_rules(PROJECT / "config" / "rules.yaml", yaml.safe_load(
    (PROJECT / "config" / "rules.yaml").read_text())).limits  # fmt: skip
RESIDENTS = [
    {"id": 1, "country": "US", "name": "Ann", "gender": "Female", "age": 30, "address": "1 A St"},
    {"id": 2, "country": "DE", "name": "Bernd", "gender": "Male", "age": 40, "address": "B-Str. 2"},
    {"id": 3, "country": "FR", "name": "Chloé", "gender": None, "age": None, "address": None},
]


def as_csv(records: list[dict[str, object]], sep: str = ",") -> str:
    columns = HEADER.strip().split(",")
    lines = [sep.join(columns)]
    lines += [sep.join("" if r[c] is None else str(r[c]) for c in columns) for r in records]
    return "\n".join(lines) + "\n"


WRITERS = {
    "csv": as_csv,
    "tsv": lambda rs: as_csv(rs, "\t"),
    "json": json.dumps,
    "ndjson": lambda rs: "".join(json.dumps(r) + "\n" for r in rs),
    "jsonl": lambda rs: "".join(json.dumps(r) + "\n" for r in rs),
}


def read_file(path: Path, encoding: str = "utf-8") -> list[Record]:
    """The records of `path` as `pipeline load` reads them (the shipped rules' limits)."""
    return list(open_source(path, encoding, SHIPPED_LIMITS).records())


def file_error(path: Path) -> str:
    """The SourceError reading `path` ends in (failing the test if it ends in none)."""
    with pytest.raises(SourceError) as caught:
        read_file(path)
    return str(caught.value)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_the_same_records(tmp_path: Path, fmt: str, gz: bool) -> None:
    text = WRITERS[fmt](RESIDENTS).encode()  # type: ignore[operator]
    path = tmp_path / (f"residents.{fmt}" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text) if gz else text)
    empty = "" if fmt in ("csv", "tsv") else None  # an empty CSV field; the shard trims it to NULL
    assert [(r.number, six(r), r.problem) for r in read_file(path)] == [
        (1, ("1", "US", "Ann", "Female", "30", "1 A St"), None),
        (2, ("2", "DE", "Bernd", "Male", "40", "B-Str. 2"), None),
        (3, ("3", "FR", "Chloé", empty, empty, empty), None),
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("empty.csv", ""),
        ("blank.csv", "\n \r\n"),
        ("empty.json", ""),
        ("none.json", " []\n"),
        ("empty.ndjson", ""),
        ("blank.ndjson", "\n\n"),
    ],
)
def test_an_empty_file_holds_no_records(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert read_file(path) == []
    if name.endswith(".json"):  # a gzipped one reads the same
        gzipped = tmp_path / f"{name}.gz"
        gzipped.write_bytes(gzip.compress(text.encode()))
        assert read_file(gzipped) == []


def test_a_line_of_spaces_is_blank_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "spaces.csv"
    path.write_text(HEADER + "1,DE,Ann,,30,\n   \n2,DE,Bob,,31,\n \t \n , ,\n")
    assert [(r.number, r.line, six(r)) for r in read_file(path)] == [
        (1, 2, ("1", "DE", "Ann", "", "30", "")),
        (2, 4, ("2", "DE", "Bob", "", "31", "")),
    ]


def test_a_header_whose_quote_runs_past_its_line_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "quoted_header.csv"
    path.write_text('id,country,"name\n",age\n1,DE,Ann,30\n')
    assert file_error(path) == "line 1: unreadable header: a quote is not closed on the line"


def test_a_quote_left_open_to_the_end_is_a_file_error(tmp_path: Path) -> None:
    # The open quote is in the last column: without strict reading, the rest of the file
    # became one address and records 3 and 4 vanished without a reject.
    path = tmp_path / "open.csv"
    path.write_text(
        HEADER + '1,DE,Ann,,30,Main St\n2,DE,Bob,,31,"Open St\n3,DE,Cy,,32,\n4,DE,Di,,33,\n'
    )
    assert file_error(path) == (
        "line 3: a quote opened in this record is not closed before the end of the file"
    )


def test_text_after_a_closing_quote_rejects_that_record(tmp_path: Path) -> None:
    path = tmp_path / "after.csv"
    path.write_text(
        HEADER + '1,DE,"Bob" Smith,,30,\n2,DE,"Ann ""A."" Lee",,31,\n'
        # the quote opened later on the bad line holds the next line: one record, rejected
        '3,DE,"Cy" Cole,,32,"Main St\nBerlin"\n4,DE,Di,,33,\n'
    )
    records = read_file(path)
    assert [(r.number, r.line, r.values and r.values[:3], r.reason) for r in records] == [
        (1, 2, None, "malformed_record"),
        (2, 3, ("2", "DE", 'Ann "A." Lee'), "malformed_record"),  # reason: unused, not rejected
        (3, 4, None, "malformed_record"),
        (4, 6, ("4", "DE", "Di"), "malformed_record"),
    ]
    first, third = records[0].problem or "", records[2].problem or ""
    assert "goes on after its closing quote" in first and "from line" not in first
    assert "goes on after its closing quote" in third and "from line 4 to 5" in third
    assert records[2].raw == ["3", "DE", "Cy Cole", "", "32", "Main St\nBerlin"]


def test_a_reread_record_across_the_readers_blocks(tmp_path: Path) -> None:
    # CSV is read a block of lines at a time: this bad record starts on the last line of the
    # first block and ends in the second, and the record after it keeps its line.
    row = "{:06},DE,Resident,Female,40,Addr\n"
    first_block = -(-BLOCK // len(row.format(1)))  # lines, as readlines(BLOCK) takes them
    good = [row.format(i) for i in range(1, first_block)]
    bad = f'{first_block},DE,"Bob" Smith,,30,"Main St\nBerlin\nGermany"\n'
    path = tmp_path / "deep.csv"
    path.write_text(HEADER + "".join(good) + bad + f"{first_block + 1},DE,Late,,abc,\n")
    records = read_file(path)
    bad_line = first_block + 1  # the header is line 1
    assert [r.line for r in records] == [*range(2, bad_line), bad_line, bad_line + 3]
    assert (records[-2].number, records[-2].values, records[-2].reason) == (
        first_block,
        None,
        "malformed_record",
    )
    assert records[-2].raw[-1] == "Main St\nBerlin\nGermany"  # read again whole, across blocks
    assert six(records[-1]) == (f"{first_block + 1}", "DE", "Late", "", "abc", "")


def test_odd_ndjson_lines_are_rejected_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "odd.ndjson"
    deep = "[" * 100_000 + "]" * 100_000
    long_line = json.dumps([{"id": i, "country": "DE", "name": "x" * 100} for i in range(20_000)])
    assert len(long_line) > SHIPPED_LIMITS.max_line
    good = json.dumps({"id": 1, "country": "DE", "name": "Fine"})
    path.write_text(f"{deep}\n{long_line}\n{good}\n")
    records = read_file(path)
    assert [(r.line, six(r), r.reason if r.values is None else None) for r in records] == [
        (1, None, "malformed_record"),
        (2, None, "too_large"),
        (3, ("1", "DE", "Fine", None, None, None), None),
    ]
    assert "longer than" in (records[1].problem or "")


def test_broken_json_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"id": 1, "country": "DE", "name": "Ann"}, {"id": 2,')
    assert file_error(path) == "not a JSON array of objects: the file ends inside record 2"


@pytest.mark.parametrize("text", ['{"id": 1, "country": "DE", "name": "Ann"}', '"hello"', "{}"])
def test_json_that_is_not_an_array_is_a_file_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "object.json.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert "not a JSON array (use .ndjson for one object a line)" in file_error(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("no_name.csv", "id,country,gender\n1,US,Male\n", "required column 'name' is missing"),
        (
            "no_name.json",
            json.dumps([{"id": 1, "country": "US"}]),
            "required column 'name' is in no record",
        ),
        (
            "no_country.ndjson",
            json.dumps({"id": 1, "name": "Ann"}) + "\n",
            "required column 'country' is in no record",
        ),
    ],
)
def test_a_missing_required_column_is_a_file_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert message in file_error(path)


def test_a_file_that_does_not_decode_is_a_file_error_unless_its_encoding_is_given(
    tmp_path: Path,
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "1,DE,Jürgen,Male,50,Straße 1\n").encode("latin-1"))
    assert file_error(path).startswith("not valid utf-8 at line 2, byte 7 (")
    assert "use --encoding for files in another encoding" in file_error(path)
    assert [six(r) for r in read_file(path, "latin-1")] == [
        ("1", "DE", "Jürgen", "Male", "50", "Straße 1")
    ]


def test_unknown_columns_are_noted_and_their_records_read(tmp_path: Path) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("id,country,name,shoe_size\n1,DE,Ann,38\n2,DE,Bo,44\n")
    source = open_source(path, limits=SHIPPED_LIMITS)
    assert [six(r) for r in source.records()] == [
        ("1", "DE", "Ann", "", "", ""),  # columns not in the header read as empty fields
        ("2", "DE", "Bo", "", "", ""),
    ]
    assert source.unknown_columns == {"shoe_size"}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_batches_cut_by_their_raw_records_keep_every_record_in_order(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records that hold 1,000 characters beside their fields, every third refused by the
    # reader: batches are cut by RAW_BYTES (made small here), before BATCH_RECORDS or
    # BATCH_CHARS, and every record comes once, in order, with its line and raw record.
    raw_bytes = 40_000
    monkeypatch.setattr(batches_module, "RAW_BYTES", raw_bytes)
    count = 120
    extra = "n" * 1_000
    refused = set(range(3, count + 1, 3))
    path = tmp_path / f"wide.{fmt}"
    if fmt == "csv":
        lines = ["id,country,name,notes"]
        for i in range(1, count + 1):  # a refused row: a comma too many
            lines.append(f"{i},DE,N{i},{extra}" + (",x" if i in refused else ""))
        path.write_text("\n".join(lines) + "\n")
    else:
        objects = [
            {"id": i, "country": "DE", "name": f"N{i}", "notes": extra}
            | ({"address": ["a"] * 100} if i in refused else {})
            for i in range(1, count + 1)
        ]
        if fmt == "ndjson":
            path.write_text("".join(json.dumps(o) + "\n" for o in objects))
        else:
            path.write_text(json.dumps(objects))
    source = open_source(path, "utf-8", Limits(), arrow=False)
    assert not source.bulk
    got = list(batches_module.batches(source))
    assert len(got) > 3
    numbers: list[int] = []
    for batch in got:
        kept = batch.records.to_pylist()
        early = [entry[0] for entry in batch.early]
        assert set(early) <= refused and not set(kept) & refused
        numbers += sorted(kept + early)
        if fmt != "json":  # a JSON array has no lines
            lines_of = dict(zip(kept, batch.lines.to_pylist(), strict=True))
            lines_of |= {entry[0]: entry[1] for entry in batch.early}
            assert all(line == n + (fmt == "csv") for n, line in lines_of.items())
        chosen = list(range(len(kept)))
        for number, raw in zip(kept, batch.raws(chosen), strict=True):
            assert raw["id"] in (number, str(number)) and raw["notes"] == extra
        for number, *_, raw in batch.early:
            if fmt == "csv":  # a field of a refused row is cut to its start and length
                assert raw[:3] == [str(number), "DE", f"N{number}"] and raw[4] == "x"
                assert raw[3].startswith("nnnn") and raw[3].endswith("(1000 characters)")
            else:
                assert raw["id"] == number and raw["address"] == ["a"] * 100
    assert numbers == list(range(1, count + 1))


@pytest.mark.parametrize(
    ("name", "head", "record"),
    [
        ("f.csv", b"name,country\r\n", b"Ann,DE\r\n"),
        ("f.ndjson", b"", b'{"name":"A","country":"DE"}\r\n'),
    ],
    ids=["csv", "ndjson"],
)
def test_a_crlf_cut_by_a_read_before_blank_lines_keeps_the_line_numbers(
    tmp_path: Path, name: str, head: bytes, record: bytes
) -> None:
    """The line reader reads BLOCK bytes at a time: a read that ends with the \\r of a \\r\\n,
    then a read of blank lines (folded into one), must count the \\n with its \\r."""
    body = head + record * ((BLOCK - len(head)) // len(record) - 1)
    pad = BLOCK + 1 - len(body) - len(record)
    body += record.replace(b"A", b"A" + b"x" * pad, 1)
    assert body[BLOCK - 1 : BLOCK + 1] == b"\r\n"
    path = tmp_path / name
    path.write_bytes(body + b"\n" * BLOCK + record)
    expected = (body + b"\n" * BLOCK).count(b"\n") + 1
    for bulk in (True, False):
        last = list(batches_module.batches(open_source(path, arrow=bulk)))[-1]
        assert last.lines.to_pylist()[-1] == expected
