"""`pipeline load`: formats, rules, routing, the rejects file, budgets, exactly-once, output."""

from __future__ import annotations

import gzip
import json
import os
import queue
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.copy import QueuedLibpqWriter

from pipeline.batch import BATCH_RECORDS
from pipeline.batches import batches
from pipeline.copyin import COPY_QUEUE, QueuedWriter
from pipeline.sources import open_source
from pipeline.writer import REJECTS_BATCH
from tests.conftest import ORIGINAL_DATA, RunCli, ledger, rows, shard_map_yaml, write_map

HEADER = "id,country,name,gender,age,address\n"


def read_rejects(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.glob("*.ndjson"))
    # split("\n"), not splitlines(): a raw record may hold U+2028 or U+0085.
    return [json.loads(line) for f in files for line in f.read_text().split("\n") if line]


def test_original_app_data_lands_where_the_django_app_put_it(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str]
) -> None:
    result = run_cli("load", str(ORIGINAL_DATA))
    assert result.exit_code == 0, result.output
    assert [r[0] for r in rows(shard_dsns["db_us"])] == [1, 2, 21, 23]
    assert [r[0] for r in rows(shard_dsns["default"])] == [1, 2, 17, 22, 25]
    assert all(r[1] == "US" for r in rows(shard_dsns["db_us"]))
    # the original typo is normalised by the rules
    genders = {r[3] for d in shard_dsns.values() for r in rows(d)}
    assert genders == {"Male", "Female"}
    assert "total: 9 read = 9 loaded + 0 rejected" in result.output
    assert "shard default: 5 inserted, 0 updated, 0 unchanged" in result.output
    assert "shard db_us: 4 inserted, 0 updated, 0 unchanged" in result.output


def test_rerun_is_a_no_op(run_cli: RunCli, initialised: None, shard_dsns: dict[str, str]) -> None:
    # --connect-timeout 0: no limit, as the README says of every time-out
    assert run_cli("load", str(ORIGINAL_DATA), "--connect-timeout", "0").exit_code == 0
    before = {name: rows(dsn) for name, dsn in shard_dsns.items()}
    again = run_cli("load", str(ORIGINAL_DATA), "--json")
    assert again.exit_code == 0
    report = json.loads(again.stdout)
    assert report["files"][0]["skipped"] is True
    assert report["rows_loaded"] == 0
    assert {name: rows(dsn) for name, dsn in shard_dsns.items()} == before
    assert [len(ledger(dsn)) for dsn in shard_dsns.values()] == [1, 1]


def test_the_same_bytes_under_another_name_are_skipped(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    copy = tmp_path / "renamed.json"
    copy.write_bytes(ORIGINAL_DATA.read_bytes())
    assert run_cli("load", str(ORIGINAL_DATA)).exit_code == 0
    result = run_cli("load", str(copy), "--json")
    assert json.loads(result.stdout)["files"][0]["skipped"] is True


RECORDS = [
    {"id": 1, "country": "US", "name": "Ann", "gender": "Female", "age": 30, "address": "1 A St"},
    {"id": 2, "country": "DE", "name": "Bernd", "gender": "Male", "age": 40, "address": "B-Str. 2"},
    {"id": 3, "country": "FR", "name": "Chloé", "gender": None, "age": None, "address": None},
]


def _csv(records: list[dict[str, Any]], sep: str = ",") -> str:
    def cell(v: Any) -> str:
        return "" if v is None else str(v)

    lines = [sep.join(HEADER.strip().split(","))]
    lines += [sep.join(cell(r[c]) for c in HEADER.strip().split(",")) for r in records]
    return "\n".join(lines) + "\n"


WRITERS: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "csv": _csv,
    "tsv": lambda rs: _csv(rs, "\t"),
    "json": lambda rs: json.dumps(rs),
    "ndjson": lambda rs: "".join(json.dumps(r) + "\n" for r in rs),
    "jsonl": lambda rs: "".join(json.dumps(r) + "\n" for r in rs),
}


# Every format and its gzipped file read the same records (test_sources.py); here one of each
# kind of field, CSV's text (empty: '') and JSON's values (null), loads the same rows.
@pytest.mark.parametrize(
    ("fmt", "gz"), [("csv", False), ("ndjson", True)], ids=["csv", "ndjson.gz"]
)
def test_every_format_loads_the_same_rows(
    run_cli: RunCli,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    fmt: str,
    gz: bool,
) -> None:
    text = WRITERS[fmt](RECORDS).encode()
    path = tmp_path / (f"residents.{fmt}" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(text) if gz else text)
    result = run_cli("load", str(path))
    assert result.exit_code == 0, result.output
    assert rows(shard_dsns["db_us"]) == [(1, "US", "Ann", "Female", 30, "1 A St")]
    assert rows(shard_dsns["default"]) == [
        (2, "DE", "Bernd", "Male", 40, "B-Str. 2"),
        (3, "FR", "Chloé", None, None, None),
    ]


def test_dirty_csv_bom_crlf_semicolons_quoted_newlines(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "dirty.csv"
    path.write_bytes(
        b"\xef\xbb\xbf Id ;COUNTRY;Name;gender;age;address\r\n"
        b'7;  usa ;"Smith, ""Jr""";m; 22 ;"1 Main St\r\nApt 2"\r\n'
        b"\r\n"
        b"8;Germany;\xc2\xa0 Hans \xc2\xa0;Fimale;+40;\r\n"  # no-break spaces around the name
    )
    result = run_cli("load", str(path))
    assert result.exit_code == 0, result.output
    assert rows(shard_dsns["db_us"]) == [(7, "US", 'Smith, "Jr"', "Male", 22, "1 Main St\r\nApt 2")]
    assert rows(shard_dsns["default"]) == [(8, "DE", "Hans", "Female", 40, None)]


BAD_ROWS = [
    ("1,ZZ,Nobody,Male,30,", "invalid_country"),
    ("2,,Nobody,Male,30,", "missing_country"),
    ("3,FR,,Male,30,", "missing_name"),
    ("4,FR,   ,Male,30,", "missing_name"),
    ("5,FR,Ann,Female,abc,", "invalid_age"),
    ("6,FR,Ann,Female,-5,", "invalid_age"),
    ("7,FR,Ann,Female,200,", "invalid_age"),
    ("8,FR,Ann,Female,22.5,", "invalid_age"),
    ("x9,FR,Ann,Female,22,", "invalid_id"),
    ("0,FR,Ann,Female,22,", "invalid_id"),
    ("-3,FR,Ann,Female,22,", "invalid_id"),
    ("1000000000000000,FR,Ann,Female,22,", "invalid_id"),
    ("99999999999999999999999,FR,Ann,Female,22,", "invalid_id"),
    ("10,FR,Ann,Robot,22,", "invalid_gender"),
    ("11,FR,Ann,Female,22,extra,field", "malformed_record"),
    ("12,FR,Nul\x00Byte,Female,22,", "invalid_text"),
    ("13,FR,First,Female,22,", "duplicate_id"),
    ("13,FR,Last,Female,23,", None),
    ("14,US,Good,Male,50,", None),
]


def test_every_bad_row_is_rejected_with_its_reason(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "".join(line + "\n" for line, _ in BAD_ROWS))
    rejects = tmp_path / "rejects"
    result = run_cli(
        "load", str(path), "--max-rejects", "100%", "--rejects", str(rejects), "--json"
    )
    assert result.exit_code == 0, result.output
    found = read_rejects(rejects)
    expected = [(n, reason) for n, (_, reason) in enumerate(BAD_ROWS, start=1) if reason]
    assert sorted((r["record"], r["reason"]) for r in found) == expected
    assert all(r["file"] == str(path) and r["message"] and r["raw"] for r in found)
    assert all(r["line"] == r["record"] + 1 for r in found)  # one header line, no blank ones
    (rejects_file,) = rejects.glob("*.ndjson")
    assert stat.S_IMODE(os.stat(rejects_file).st_mode) == 0o600
    report = json.loads(result.stdout)
    assert report["rows_read"] == len(BAD_ROWS)
    assert report["rows_rejected"] == len(expected)
    assert report["rows_loaded"] == len(BAD_ROWS) - len(expected)
    assert report["rejects_file"] == str(rejects_file)
    assert rows(shard_dsns["default"]) == [(13, "FR", "Last", "Female", 23, None)]
    assert rows(shard_dsns["db_us"]) == [(14, "US", "Good", "Male", 50, None)]


def test_rejects_name_the_line_a_record_starts_on(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    path = tmp_path / "lines.csv"
    path.write_bytes(
        b"id,country,name,age\r\n"  # line 1
        b'1,DE,"Two\r\nLines",30\r\n'  # lines 2-3: one record
        b"\r\n"  # line 4: blank, not a record
        b"2,DE,Bad Age,abc\r\n"  # line 5
        b"3,DE,Too,1,many\r\n"  # line 6
    )
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    found = sorted((r["record"], r["line"], r["reason"]) for r in read_rejects(rejects))
    assert found == [(2, 5, "invalid_age"), (3, 6, "malformed_record")]


def test_json_values_are_checked_like_text(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "values.ndjson"
    records: list[dict[str, Any]] = [
        {"id": "1", "country": "DE", "name": "Str Age", "age": "22"},
        {"id": 2, "country": "DE", "name": "Float Age", "age": 22.0},
        {"id": 3, "country": "DE", "name": "Bool Age", "age": True},
        {"id": 4, "country": "DE", "name": ["a", "list"]},
        {"id": 5, "country": "United States", "name": "Alias"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n[1]\n")
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert [r[:5] for r in rows(shard_dsns["default"])] == [
        (1, "DE", "Str Age", None, 22),
        (2, "DE", "Float Age", None, 22),
    ]
    assert [r[0] for r in rows(shard_dsns["db_us"])] == [5]
    assert [(r["record"], r["line"], r["reason"]) for r in read_rejects(rejects)] == [
        (3, 3, "malformed_record"),
        (4, 4, "malformed_record"),
        (6, 6, "malformed_record"),
        (7, 7, "malformed_record"),
    ]


def test_a_nul_in_a_bulk_read_ndjson_value_is_refused_as_invalid_text(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    """The bulk NDJSON reader tells the rules which batches hold a NUL (a \\u0000
    escape): the record is refused in a later batch as in the first."""
    path = tmp_path / "nul.ndjson"
    count = 2 * BATCH_RECORDS + 5
    marked = {3, BATCH_RECORDS + 9}  # one in the first batch, one in the second
    records = [
        {"id": i, "country": "DE", "name": f"N\x00{i}" if i in marked else f"N{i}"}
        for i in range(1, count + 1)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert sum(map(len, batches(open_source(path, arrow=True)))) == count  # taken in bulk
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert sorted((r["record"], r["reason"]) for r in read_rejects(rejects)) == [
        (n, "invalid_text") for n in sorted(marked)
    ]
    held = [r[0] for r in rows(shard_dsns["default"])]
    assert held == [i for i in range(1, count + 1) if i not in marked]


@pytest.mark.parametrize(
    ("name", "content", "lines"),
    [
        ("numbers.json", "[1, 2, 3]", [None, None, None]),
        ("garbage.ndjson", "not json\n[1]\n\n" + "[" * 5000 + "]" * 5000 + "\n", [1, 2, 4]),
    ],
)
def test_a_file_of_no_object_rejects_each_record_and_misses_no_column(
    run_cli: RunCli,
    initialised: None,
    tmp_path: Path,
    name: str,
    content: str,
    lines: list[int | None],
) -> None:
    """Records that are not objects have no columns to miss: each is rejected for what it is,
    and the counts add up, as when an object is among them."""
    path = tmp_path / name
    path.write_text(content)
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert f"{path} ({name.split('.')[1]}): 3 read = 0 loaded + 3 rejected" in result.output
    found = [(r["record"], r["line"], r["reason"]) for r in read_rejects(rejects)]
    expected = [(n, line, "malformed_record") for n, line in enumerate(lines, start=1)]
    assert found == expected


@pytest.mark.parametrize("name", ["twice.ndjson", "twice.json"])
def test_a_json_record_naming_a_column_twice_is_rejected(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, name: str
) -> None:
    """Keys that differ only in case or spaces name one column: which value to load is not
    the record's to say twice, as a CSV header may not (a file error there)."""
    records = [
        {"id": 1, "country": "DE", "country ": "US", "name": "Ann"},
        {"id": 2, "country": "DE", "name": "lower", "Name": "Upper"},
        {"id": 3, "country": "DE", "name": "Bo"},
    ]
    texts = [json.dumps(r) for r in records]
    # The same key twice, which json.dumps cannot write (and Python's json reads as the last).
    texts += ['{"id": 4, "country": "DE", "name": "A", "name": "B"}']
    texts += ['{"id": 5, "country": "DE", "name": "C", "country": "US", "country": "DE"}']
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text("[" + ", ".join(texts) + "]")
    else:
        path.write_text("".join(text + "\n" for text in texts))
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert "5 read = 1 loaded + 4 rejected" in result.output
    assert [r[:3] for r in rows(shard_dsns["default"])] == [(3, "DE", "Bo")]
    assert rows(shard_dsns["db_us"]) == []
    assert [(r["record"], r["reason"], r["message"]) for r in read_rejects(rejects)] == [
        (1, "malformed_record", "a column named twice ('country', 'country ')"),
        (2, "malformed_record", "a column named twice ('name', 'Name')"),
        (4, "malformed_record", "a column named twice ('name')"),
        (5, "malformed_record", "a column named twice ('country')"),
    ]


def test_a_missing_required_column_fails_the_whole_file(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # each format's way of missing one: test_sources.py
    path = tmp_path / "no_name.json"
    path.write_text(json.dumps([{"id": 1, "country": "US"}]))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(RECORDS))
    result = run_cli("load", str(path), str(good))
    assert result.exit_code == 1
    assert f"Error: {path}: required column 'name' is in no record" in result.output
    assert "Traceback" not in result.output
    # the other file still loads; nothing of the bad one does
    assert len(rows(shard_dsns["default"])) == 2 and len(rows(shard_dsns["db_us"])) == 1


def test_a_file_of_repeated_ids_loads_the_last_of_each(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "twice.csv"  # the same 1,000 ids three times over; an invalid last one
    lines = [f"{i % 1000 + 1},DE,Round {i // 1000},,30,\n" for i in range(3000)]
    lines[-1] = "1000,DE,Bad Age,,abc,\n"
    path.write_text(HEADER + "".join(lines))
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    loaded = rows(shard_dsns["default"])
    assert [r[0] for r in loaded] == list(range(1, 1001))
    # the last valid row of each id wins; id 1000's last row is invalid, so its second wins
    assert {r[2] for r in loaded[:-1]} == {"Round 2"} and loaded[-1][2] == "Round 1"
    reasons = [r["reason"] for r in read_rejects(rejects)]
    assert reasons.count("duplicate_id") == 1999 and reasons.count("invalid_age") == 1


def test_rejects_come_out_whole_past_one_fetch(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "ages.csv"  # refused rows on both shards, over two fetches on one
    count = 2 * REJECTS_BATCH + 1
    lines = [f"{i},{'US' if i % 3 == 0 else 'DE'},Name {i},,abc,\n" for i in range(1, count + 1)]
    path.write_text(HEADER + "".join(lines) + f"{count + 1},DE,Good,,30,\n")
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    found = read_rejects(rejects)
    assert sorted(r["record"] for r in found) == list(range(1, count + 1))
    by_shard = {s: [r["record"] for r in found if r["shard"] == s] for s in ("default", "db_us")}
    assert all(records == sorted(records) for records in by_shard.values())
    assert len(by_shard["default"]) > REJECTS_BATCH and by_shard["db_us"]  # two fetches, one
    assert rows(shard_dsns["default"]) == [(count + 1, "DE", "Good", None, 30, None)]


def test_the_load_copy_queue_is_psycopgs_own_made_short(
    connect: Callable[[str], psycopg.Connection[Any]],
) -> None:
    # QueuedWriter replaces an attribute of psycopg's writer: fail if psycopg stops using it.
    with connect("default") as conn:
        assert isinstance(QueuedLibpqWriter(conn.cursor())._queue, queue.Queue)
        conn.execute("CREATE TEMP TABLE sink (line text)")
        cursor = conn.cursor()
        writer = QueuedWriter(cursor)
        short = writer._queue
        with cursor.copy("COPY sink FROM STDIN", writer=writer) as copy:
            for i in range(COPY_QUEUE * 4_000):  # buffers of 32 KB and more: many times the queue
                copy.write_row((f"row {i:08}",))
        assert writer._queue is short and short.maxsize == COPY_QUEUE
        assert conn.execute("SELECT count(*) FROM sink").fetchone() == (COPY_QUEUE * 4_000,)


def test_a_file_over_its_budget_loads_nothing(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "half_bad.csv"
    path.write_text(HEADER + "1,US,Ann,,30,\n2,DE,Bo,,30,\n3,ZZ,Cy,,30,\n4,DE,,,30,\n")
    over = run_cli("load", str(path), "--max-rejects", "1", "--json", "--rejects", str(tmp_path))
    assert over.exit_code == 1
    report = json.loads(over.stdout)
    assert report["files"][0]["error"].endswith(
        "the whole file is rejected, nothing of it was loaded"
    )
    assert (report["rows_read"], report["rows_loaded"], report["rows_rejected"]) == (4, 0, 4)
    assert rows(shard_dsns["default"]) == [] and rows(shard_dsns["db_us"]) == []
    within = run_cli("load", str(path), "--max-rejects", "50%", "--rejects", str(tmp_path))
    assert within.exit_code == 0, within.output
    assert "4 read = 2 loaded + 2 rejected" in within.output


def test_unknown_columns_are_ignored_with_one_warning(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    path = tmp_path / "extra.csv"
    path.write_text("id,country,name,shoe_size\n1,DE,Ann,38\n2,DE,Bo,44\n")
    result = run_cli("load", str(path))
    assert result.exit_code == 0
    assert result.output.count("ignored unknown column(s): shoe_size") == 1


def test_a_file_that_does_not_decode_is_a_file_error(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "1,DE,Jürgen,Male,50,Straße 1\n").encode("latin-1"))
    result = run_cli("load", str(path))
    assert result.exit_code == 1
    assert "not valid utf-8" in result.output and "--encoding" in result.output
    assert rows(shard_dsns["default"]) == []
    ok = run_cli("load", str(path), "--encoding", "latin-1")
    assert ok.exit_code == 0, ok.output
    assert rows(shard_dsns["default"]) == [(1, "DE", "Jürgen", "Male", 50, "Straße 1")]


def test_empty_files_load_nothing_and_are_no_error(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # what each format's empty file holds (no record): test_sources.py
    folder = tmp_path / "incoming"
    folder.mkdir()
    empty = {"empty.csv": "", "blank.csv": "\n \r\n", "none.json": " []\n", "blank.ndjson": "\n\n"}
    for name, text in empty.items():
        (folder / name).write_text(text)
    (folder / "empty.json.gz").write_bytes(gzip.compress(b""))
    result = run_cli("load", str(folder), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted((Path(f["path"]).name, f["rows_read"], f["error"]) for f in report["files"]) == [
        (name, 0, None) for name in sorted([*empty, "empty.json.gz"])
    ]
    assert rows(shard_dsns["default"]) == [] and rows(shard_dsns["db_us"]) == []


def test_unrouted_countries_are_rejected_when_default_is_reject(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    config = write_map(
        tmp_path / "strict",
        shard_map_yaml(shard_dsns, routes="{default: [DE], db_us: [US]}", default="reject"),
    )
    assert run_cli("init", config=config).exit_code == 0
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(RECORDS))
    rejects = tmp_path / "rejects"
    result = run_cli(
        "load", str(path), "--max-rejects", "1", "--rejects", str(rejects), config=config
    )
    assert result.exit_code == 0, result.output
    assert [(r["record"], r["reason"]) for r in read_rejects(rejects)] == [(3, "unrouted_country")]


def test_dry_run_reports_and_writes_nothing(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    result = run_cli("load", str(ORIGINAL_DATA), "--dry-run", "--rejects", str(tmp_path / "r"))
    assert result.exit_code == 0
    assert "total: 9 read = 9 loaded + 0 rejected (dry run: nothing written)" in result.output
    assert "shard db_us: 4 inserted" in result.output
    assert rows(shard_dsns["db_us"]) == [] and ledger(shard_dsns["db_us"]) == []
    assert not (tmp_path / "r").exists()


def test_a_dry_run_previews_each_file_against_the_shards_as_they_were(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # As the README says: each file of a dry run is rolled back before the next, so two
    # files giving the same ids both count them inserted; the real run does not.
    paths = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.ndjson"
        records = [{"id": i, "country": "DE", "name": f"{name}{i}"} for i in range(1, 6)]
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        paths.append(str(path))

    def counts(*args: str) -> tuple[int, int]:
        result = run_cli("load", "--json", *args, *paths, paths[0])
        shard = json.loads(result.stdout)["shards"]["default"]
        return shard["inserted"], shard["updated"]

    assert counts("--dry-run") == (15, 0)  # a, b, then a again: each against empty shards
    assert rows(shard_dsns["default"]) == []
    # a inserts, b updates, a again is in the ledger: skipped, and no "later file" of b's
    # (it kept a's rows from b once, taking a's first load for a later one's).
    assert counts() == (5, 5)
    assert {r[2] for r in rows(shard_dsns["default"])} == {f"b{i}" for i in range(1, 6)}


@pytest.mark.parametrize("read_again", [False, True])
def test_a_file_loaded_after_later_files_of_its_command_says_what_it_could_not_keep(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    read_again: bool,
) -> None:  # fmt: skip
    # B is loaded alone first (as after `load A B` failed during A), then `load A B`: A keeps
    # the rows B wrote, but not those B found already holding its values, nor those B
    # deleted: it says so, and loading B again with --force has B apply last.
    def file(name: str, records: list[dict[str, Any]]) -> str:
        path = tmp_path / f"{name}.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return str(path)

    c = file("c", [{"id": 5, "country": "DE", "name": "from B"}])
    b = file("b", [{"id": i, "country": "DE", "name": "from B"} for i in (5, 6)]
             + [{"id": 7, "country": "DE", "name": "x", "_op": "delete"}])  # fmt: skip
    a = file("a", [{"id": i, "country": "DE", "name": "from A"} for i in (5, 6, 7)])
    if read_again:  # A as a CSV the bulk reader gives up on (a lone CR): read again, the
        # file restarts on every shard, and what its start found must stand
        a = str(tmp_path / "a.csv")
        Path(a).write_bytes(b"id,country,name\n5,DE,from A\n6,DE,from A\n7,DE,from A\n"
                            b'8,DE,"a\rb"\n')  # fmt: skip
    assert run_cli("load", c, b).exit_code == 0  # B leaves 5 unchanged: it is still C's

    def names() -> dict[int, str]:
        return {r[0]: r[2] for r in rows(shard_dsns["default"]) if r[0] != 8}

    result = run_cli("load", a, b)
    assert result.exit_code == 0, result.output
    assert names() == {5: "from A", 6: "from B", 7: "from A"}  # 6 kept: B wrote it
    assert f"Warning: {a}: loaded on shard default after later files of this command" in (
        result.output
    )
    assert "load those files again with --force" in result.output
    assert run_cli("load", "--force", b).exit_code == 0
    assert names() == {5: "from B", 6: "from B"}
    # With --force the later files load again in the run, after A: nothing to say.
    forced = run_cli("load", "--force", a, b)
    assert "Warning" not in forced.output and names() == {5: "from B", 6: "from B"}


def test_force_reloads_and_counts_changes(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "people.json"
    path.write_text(json.dumps(RECORDS))
    assert run_cli("load", str(path)).exit_code == 0
    forced = json.loads(run_cli("load", str(path), "--force", "--json").stdout)
    assert forced["shards"]["default"] == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 2,
        "kept": 0,
        "rejected": 0,
        "deleted": 0,
        "not_found": 0,
    }
    changed = [dict(r) for r in RECORDS]
    changed[1]["age"] = 41
    path.write_text(json.dumps(changed))
    report = json.loads(run_cli("load", str(path), "--json").stdout)
    assert report["shards"]["default"] == {
        "inserted": 0,
        "updated": 1,
        "unchanged": 1,
        "kept": 0,
        "rejected": 0,
        "deleted": 0,
        "not_found": 0,
    }
    assert report["shards"]["db_us"] == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 1,
        "kept": 0,
        "rejected": 0,
        "deleted": 0,
        "not_found": 0,
    }
    assert rows(shard_dsns["default"])[0][4] == 41
    assert [r[1:4] for r in ledger(shard_dsns["default"])] == [(2, 2, 0), (2, 2, 0), (2, 2, 0)]


GENERATED_FROM = 10**15


def test_rows_without_an_id_get_one_no_file_can_bring(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "no_ids.csv"
    path.write_text(HEADER + ",DE,First,,,\n5,DE,Given Five,,,\n,DE,Second,,,\n")
    assert run_cli("load", str(path)).exit_code == 0
    ids = {r[2]: r[0] for r in rows(shard_dsns["default"])}
    assert ids == {"Given Five": 5, "First": GENERATED_FROM, "Second": GENERATED_FROM + 1}
    # a later file naming a generated id must not overwrite that resident
    later = tmp_path / "later.csv"
    later.write_text(HEADER + f"{GENERATED_FROM},DE,Someone Else,,,\n")
    rejects = tmp_path / "rejects"
    result = run_cli("load", str(later), "--max-rejects", "1", "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert [r["reason"] for r in read_rejects(rejects)] == ["invalid_id"]
    assert {r[2] for r in rows(shard_dsns["default"])} == {"Given Five", "First", "Second"}


def test_json_report_has_the_documented_shape(run_cli: RunCli, initialised: None) -> None:
    report = json.loads(run_cli("load", str(ORIGINAL_DATA), "--json").stdout)
    load_id = report.pop("load_id")
    assert isinstance(load_id, str) and load_id
    assert report == {
        "dry_run": False,
        "files": [
            {
                "path": str(ORIGINAL_DATA),
                "format": "json",
                "source": None,
                "mode": "append",
                "rows_read": 9,
                "rows_loaded": 9,
                "rows_rejected": 0,
                "rows_pending": 0,
                "skipped": False,
                "error": None,
                "interrupted": False,
                "shard_errors": {},
                "warnings": [],
            }
        ],
        "rows_read": 9,
        "rows_loaded": 9,
        "rows_rejected": 0,
        "rows_pending": 0,
        "shards": {
            "default": {
                "inserted": 5,
                "updated": 0,
                "unchanged": 0,
                "kept": 0,
                "rejected": 0,
                "deleted": 0,
                "not_found": 0,
            },
            "db_us": {
                "inserted": 4,
                "updated": 0,
                "unchanged": 0,
                "kept": 0,
                "rejected": 0,
                "deleted": 0,
                "not_found": 0,
            },
        },
        "rejects_file": None,
        "interrupted": None,
        "not_started": [],
    }


def test_a_folder_means_its_supported_files(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(RECORDS[:1]))
    (folder / "b.csv").write_text(_csv(RECORDS[1:]))
    (folder / "notes.txt").write_text("not data")
    (folder / ".partial.csv").write_text("half a file")
    report = json.loads(run_cli("load", str(folder), "--json").stdout)
    assert [Path(f["path"]).name for f in report["files"]] == ["a.json", "b.csv"]
    assert report["rows_loaded"] == 3


def test_an_unsupported_file_is_a_usage_error(
    run_cli: RunCli, offline_map: Path, tmp_path: Path
) -> None:
    path = tmp_path / "residents.xlsx"
    path.write_bytes(b"PK")
    result = run_cli("load", str(path), config=offline_map)
    assert result.exit_code == 2
    assert "unsupported file type" in result.output


def test_a_bad_max_rejects_is_a_usage_error(run_cli: RunCli, offline_map: Path) -> None:
    result = run_cli("load", str(ORIGINAL_DATA), "--max-rejects", "lots", config=offline_map)
    assert result.exit_code == 2
    assert "is not a count (25) or a percentage (10%)" in result.output


def test_a_shard_behind_the_map_refuses_the_load(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    wider = write_map(tmp_path / "wider", shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    second = tmp_path / "second.json"
    second.write_text(json.dumps(RECORDS))
    result = run_cli("load", str(ORIGINAL_DATA), str(second), config=wider)
    assert result.exit_code == 1
    assert "residency rule is 'country NOT IN (US)' but the shard map asks for" in result.output
    assert "run `pipeline init`" in result.output
    # refused for every file, not just the first
    assert rows(shard_dsns["default"]) == [] and rows(shard_dsns["db_us"]) == []


def test_a_country_the_map_moved_loads_nowhere_until_its_rows_have_moved(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # CA moves from default (which holds resident 25 of CA) to db_us. init widens db_us and
    # cannot narrow default; a load then must not put resident 25 on db_us too.
    moved = write_map(tmp_path / "moved", shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    run_cli("init", config=moved)
    path = tmp_path / "more.ndjson"
    records = [
        {"id": 25, "country": "CA", "name": "Chloé v2"},
        {"id": 30, "country": "DE", "name": "Nora"},
        {"id": 40, "country": "US", "name": "Sam"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_cli("load", str(path), config=moved)
    assert result.exit_code == 1
    assert "3 read = 0 loaded + 0 rejected + 3 pending" in result.output
    assert (
        "the shard map moves CA here from shard default, whose constraint still takes it (its"
        " rows may be there): run `pipeline rebalance`, then re-run the same command"
    ) in result.output
    assert "run `pipeline rebalance`, which moves its rows of CA where the map sends them" in (
        result.output
    )
    assert [r[0] for r in rows(shard_dsns["db_us"])] == [1, 2, 21, 23]
    # Once the rows have moved, the same command loads, and 25 is on one shard only.
    assert run_cli("rebalance", config=moved).exit_code == 0
    assert run_cli("load", str(path), config=moved).exit_code == 0
    assert [r[0] for r in rows(shard_dsns["default"])] == [1, 2, 17, 22, 30]
    assert [r[:3] for r in rows(shard_dsns["db_us"]) if r[0] in (25, 40)] == [
        (25, "CA", "Chloé v2"), (40, "US", "Sam"),
    ]  # fmt: skip


def test_a_shard_holding_countries_the_map_now_rejects_is_not_sent_to_rebalance(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # default: reject leaves every country but US nowhere to go: rebalance cannot move them.
    rejecting = write_map(
        tmp_path / "reject", shard_map_yaml(shard_dsns, routes="db_us: [US]", default="reject")
    )
    result = run_cli("load", str(ORIGINAL_DATA), config=rejecting)
    assert result.exit_code == 1
    assert "but the shard map asks for 'country IN ()': run `pipeline init`" in result.output
    assert "rebalance" not in result.output


def test_a_shard_whose_dsn_asks_for_another_encoding_refuses_the_load(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The load sends UTF-8: in a LATIN1 session its "é" would be stored as two letters.
    latin1 = make_conninfo(shard_dsns["default"], client_encoding="LATIN1")
    config = write_map(tmp_path / "latin1", shard_map_yaml({**shard_dsns, "default": latin1}))
    path = tmp_path / "accents.csv"
    path.write_text("id,country,name\n1,DE,Ren\u00e9\n2,US,Jos\u00e9\n", encoding="utf-8")
    result = run_cli("load", str(path), config=config)
    assert result.exit_code == 1
    assert "the DSN sets client_encoding to iso8859-1: the load sends UTF-8" in result.output
    assert rows(shard_dsns["default"]) == []
    assert [r[2] for r in rows(shard_dsns["db_us"])] == ["Jos\u00e9"]  # the other shard loads


def test_trimming_removes_white_space_and_keeps_every_letter(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # E'\v' is the letter v before PostgreSQL 16: a trim set spelled with it ate these.
    path = tmp_path / "letters.ndjson"
    records = [
        {"id": 1, "country": "DE", "name": "Ivanov", "address": "Elm Blvd v"},
        {"id": 2, "country": "DE", "name": "vera", "gender": "\tF\x0b"},
        {"id": 3, "country": "DE", "name": "\x0b\x0c vlad \r\n\u00a0"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert run_cli("load", str(path)).exit_code == 0
    assert [(r[2], r[3], r[5]) for r in rows(shard_dsns["default"])] == [
        ("Ivanov", None, "Elm Blvd v"),
        ("vera", "Female", None),
        ("vlad", None, None),
    ]


def test_every_error_is_one_line(run_cli: RunCli, initialised: None, tmp_path: Path) -> None:
    trailing = tmp_path / "trailing.json"
    trailing.write_text('[{"id": 1, "country": "DE", "name": "X"}] trailing')
    corrupt = tmp_path / "corrupt.csv.gz"
    corrupt.write_bytes(gzip.compress(HEADER.encode() * 50)[:-30] + b"\x00" * 30)
    for path in (trailing, corrupt):
        result = run_cli("load", str(path), "--rejects", str(tmp_path / "r"))
        assert result.exit_code == 1
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1
        assert result.output.strip().splitlines()[-1] == errors[0]
        assert "Traceback" not in result.output
    # and so is every reject's message, the values it quotes spanning lines or not
    multiline = tmp_path / "multiline.csv"
    multiline.write_text(
        HEADER + '1,DE,Ann,,"4\n2",\n2,DE,"Bo" B,,30,"Main St\nBerlin"\n3,DE,Cy,,3,\n'
    )
    result = run_cli("load", str(multiline), "--max-rejects", "2", "--rejects", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    found = read_rejects(tmp_path / "r")  # the two files refused whole, then two records
    assert sorted((r["reason"], r["record"] or 0) for r in found) == [
        ("file_rejected", 0),
        ("file_rejected", 0),
        ("invalid_age", 1),
        ("malformed_record", 2),
    ]
    assert "age '4\\n2' is not a whole number in 0..150" in [r["message"] for r in found]
    assert all("\n" not in r["message"] for r in found), found


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--encoding", "base64"], "'base64' is not a text encoding"),
        (["--max-rejects", "150%"], "a percentage is at most 100%"),
        (["--bogus"], "No such option"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    run_cli: RunCli, offline_map: Path, args: list[str], message: str
) -> None:
    result = run_cli("load", str(ORIGINAL_DATA), *args, config=offline_map)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert message in result.output and "(see `pipeline load --help`)" in result.output


def test_a_rejects_folder_that_cannot_be_made_is_a_usage_error(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_cli("load", str(ORIGINAL_DATA), "--rejects", str(blocker / "rejects"))
    assert result.exit_code == 2
    assert "cannot make the folder" in result.output
    assert rows(shard_dsns["default"]) == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_a_rejects_folder_that_is_a_device_fails_a_dry_run_as_the_real_run(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    dry_run: list[str],
) -> None:  # fmt: skip
    # A device (click refuses a regular file itself): the real run met it at its mkdir.
    result = run_cli("load", str(ORIGINAL_DATA), *dry_run, "--rejects", "/dev/null")
    assert result.exit_code == 2
    assert "--rejects /dev/null: not a folder" in result.output
    assert rows(shard_dsns["default"]) == []


def test_a_file_that_changes_while_loading_is_refused(tmp_path: Path) -> None:
    from pipeline.sources import SourceError, open_source

    path = tmp_path / "people.json"
    path.write_text(json.dumps(RECORDS))
    source = open_source(path)
    source.sha256 = "0" * 64  # the hash taken before reading no longer matches the bytes
    with pytest.raises(SourceError, match="changed while it was being loaded"):
        list(source.records())


def test_file_names_are_printed_escaped(run_cli: RunCli, initialised: None, tmp_path: Path) -> None:
    # a newline and a terminal escape (red text) in a folder's and a file's name
    folder = tmp_path / "in\ncoming"
    folder.mkdir()
    loads = folder / "ok\x1b[31m.csv"
    loads.write_text(HEADER + "1,DE,Ann,,,\n2,DE,,,,\n")
    fails = folder / "bad\u202e.csv"
    fails.write_text("id,name\n1,Ann\n")  # no country column: a file error
    (folder / "notes\x07.txt").write_text("")
    result = run_cli("load", str(folder), str(fails), "--max-rejects", "1")
    assert result.exit_code == 1
    for raw in ("\x1b", "\x07", "\u202e", "in\ncoming"):
        assert raw not in result.output
    assert "in\\ncoming/ok\\x1b[31m.csv (csv): 2 read = 1 loaded + 1 rejected" in result.output
    assert "Error: " + str(tmp_path) + "/in\\ncoming/bad\\u202e.csv: " in result.output
    assert "passed over files of unsupported type: " in result.output
    assert "notes\\x07.txt" in result.output


def test_loading_never_changes_the_files(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "a.json").write_bytes(ORIGINAL_DATA.read_bytes())
    (incoming / "b.csv").write_text("id,country,name\n1,XX,Bad Country\n40,DE,Good\n")
    (incoming / "notes.txt").write_text("passed over")

    def state() -> dict[str, tuple[bytes, int, int]]:
        return {
            p.name: (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(incoming.iterdir())
        }

    before = state()
    assert run_cli("load", str(incoming), "--max-rejects", "1").exit_code == 0
    assert run_cli("load", str(incoming), "--max-rejects", "1", "--force").exit_code == 0
    assert state() == before


def test_a_later_file_swapped_for_a_fifo_neither_hangs_the_run_nor_stops_the_others(
    initialised: None, config_file: Path, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The files a run is given are hashed before the first one loads (pipeline.incoming):
    # one that became a FIFO after it was listed would have hung that hash for ever.
    from pipeline.config import load_rules, load_shard_map
    from pipeline.load import load
    from pipeline.load_options import LoadOptions

    good = tmp_path / "good.csv"
    good.write_text(HEADER + "1,DE,Ann,,,\n2,US,Bob,,,\n")
    swapped = tmp_path / "swapped.csv"
    os.mkfifo(swapped)
    shard_map = load_shard_map(config_file)
    options = LoadOptions(rejects_dir=tmp_path / "rejects")
    result = load(shard_map, load_rules(shard_map), [good, swapped], options)
    assert result.exit_code == 1
    assert [f.rows_loaded for f in result.files] == [2, 0]
    assert "not a regular file (a FIFO)" in (result.files[1].error or "")
    assert [r[:3] for r in rows(shard_dsns["default"])] == [(1, "DE", "Ann")]
    assert [r[:3] for r in rows(shard_dsns["db_us"])] == [(2, "US", "Bob")]
