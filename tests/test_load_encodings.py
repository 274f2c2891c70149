"""Shards whose database encoding is not UTF-8 (pipeline.encodable): a row whose text its
shard's encoding cannot hold is refused alone (`invalid_text`, naming the character and
the encoding), where the server's refusal of the COPY failed the file on that shard; the
rest loads, in every format and across batches."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pipeline.batch import BATCH_RECORDS
from pipeline.encodable import python_codec
from pipeline.packed import CHUNK_ROWS
from tests.conftest import SHARDS, RunCli, Server, shard_map_yaml, write_map

# default holds Europe in LATIN1, db_us the US in WIN1252: '€' and 'Œ' are in the second
# only, 'Ł' and '李' in neither.
ENCODINGS = {"default": "LATIN1", "db_us": "WIN1252"}
COLUMNS = ("id", "country", "name", "gender", "age", "address")


@pytest.fixture
def narrow_map(
    pg_servers: list[Server], run_cli: RunCli, tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """The test map over two databases in ENCODINGS, initialised; and their DSNs."""
    created = [
        (server, server.create_database(encoding=ENCODINGS[name]))
        for name, server in zip(SHARDS, pg_servers, strict=True)
    ]
    dsns = {name: server.dsn_for(db) for name, (server, db) in zip(SHARDS, created, strict=True)}
    config = write_map(tmp_path / "narrow", shard_map_yaml(dsns))
    try:
        init = run_cli("init", config=config)
        assert init.exit_code == 0, init.output
        yield config, dsns
    finally:
        for server, db in created:
            server.drop_database(db)


def _records(count: int) -> tuple[list[dict[str, str]], dict[int, str]]:
    """`count` records, and the ids of those their shard cannot hold with the character
    each reject names. Every 997th record brings a character of its own."""
    records, refused = [], {}
    for i in range(1, count + 1):
        country = "US" if i % 3 == 0 else ("FR" if i % 3 == 1 else "DE")
        name, address = f"Person {i}", f"{i} Main Street"
        if i % 997 == 0:
            kind = (i // 997) % 5
            if kind == 0:
                name = f"Zoë Müller {i}"  # in both
            elif kind == 1:
                name = f"李 {i}"  # in neither
                refused[i] = "李"
            elif kind == 2:
                address = f"{i} Œuvre Street"  # WIN1252 only
                if country != "US":
                    refused[i] = "Œ"
            elif kind == 3:
                name = f"Łukasz {i}"  # in neither
                refused[i] = "Ł"
            else:
                address = f"€{i} Rue"  # WIN1252 only
                if country != "US":
                    refused[i] = "€"
        gender = "Female" if i % 2 else "Male"
        values = (str(i), country, name, gender, "30", address)
        records.append(dict(zip(COLUMNS, values, strict=True)))
    return records, refused


def _write(path: Path, fmt: str, records: list[dict[str, str]]) -> None:
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "ndjson":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records, ensure_ascii=False))


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_row_its_shards_encoding_cannot_hold_is_refused_alone(
    narrow_map: tuple[Path, dict[str, str]], run_cli: RunCli, tmp_path: Path, fmt: str
) -> None:
    config, dsns = narrow_map
    count = 2 * BATCH_RECORDS + 1_000  # three batches
    records, refused = _records(count)
    path = tmp_path / f"residents.{fmt}"
    _write(path, fmt, records)
    result = run_cli("load", "--max-rejects", "100", str(path), config=config)
    assert result.exit_code == 0, result.output
    assert f"{count} read = {count - len(refused)} loaded + {len(refused)} rejected" in (
        result.output
    )

    text = next(Path("data/rejects").glob("*.ndjson")).read_text(encoding="utf-8")
    rejects = [json.loads(line) for line in text.splitlines()]
    assert {int(r["raw"]["id"]): r["reason"] for r in rejects} == dict.fromkeys(
        refused, "invalid_text"
    )
    for r in rejects:
        id_ = int(r["raw"]["id"])
        shard = "db_us" if r["raw"]["country"] == "US" else "default"
        assert (
            f"holds {refused[id_]!r}, which shard {shard}'s database cannot store" in (r["message"])
        )
        assert f"(its encoding is {ENCODINGS[shard]})" in r["message"]
        assert r["shard"] == shard  # counted on it, as its other refusals are
        assert r["record"] == id_  # the ids are the record numbers here
        assert r["line"] == {"csv": id_ + 1, "ndjson": id_, "json": None}[fmt]

    # The shards hold every other row, its text as it was written.
    wanted = {
        int(r["id"]): (r["name"], r["address"]) for r in records if int(r["id"]) not in refused
    }
    held = {}
    for shard, dsn in dsns.items():
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SHOW server_encoding").fetchone() == (ENCODINGS[shard],)
            found = conn.execute("SELECT id, name, address FROM residents")
            held.update({i: (n, a) for i, n, a in found})
    assert held == wanted


def test_what_reaches_a_narrow_shard_through_staging_is_storable_or_refused_alone(
    narrow_map: tuple[Path, dict[str, str]], run_cli: RunCli, tmp_path: Path
) -> None:
    # Rows the shard holds go through its staging table, with the fields as read beside the
    # values (for a superseded duplicate's rejects entry), and the file's name goes into its
    # ledger: text that trims to what LATIN1 holds, a delete marker's name, a duplicate's
    # first row and a Japanese file name must not fail the file on the shard.
    config, dsns = narrow_map
    first = tmp_path / "first.csv"
    first.write_text("id,country,name,gender,age,address\n1,FR,A,F,30,x\n2,FR,B,F,30,x\n")
    assert run_cli("load", str(first), config=config).exit_code == 0
    changes = tmp_path / "住民.csv"  # "residents"
    changes.write_text(
        "id,country,name,gender,age,address,_op\n"
        "1,FR,A\u200b,F,31,\u3000x,\n"  # trims to A, x: stored, age changed
        "2,FR,李,,,,delete\n"  # a marker needs only its id: deleted
        "3,FR,Dup\u200b,F,30,x,\n"  # superseded by the next: rejected, its raw text kept
        "3,FR,Dup,F,30,x,\n"
        "4,FR,李,F,30,x,\n",  # refused alone
        encoding="utf-8",
    )
    result = run_cli("load", "--max-rejects", "100%", str(changes), config=config)
    assert result.exit_code == 0, result.output
    assert "5 read = 3 loaded + 2 rejected" in result.output
    with psycopg.connect(dsns["default"]) as conn:
        held = conn.execute("SELECT id, name, age, address FROM residents ORDER BY id").fetchall()
        files = [
            r[0] for r in conn.execute("SELECT source_file FROM load_ledger ORDER BY ledger_id")
        ]
    assert held == [(1, "A", 31, "x"), (3, "Dup", 30, "x")]
    assert files == [str(first), str(changes).replace("住民", "\\u4f4f\\u6c11")]
    text = next(Path("data/rejects").glob("*.ndjson")).read_text(encoding="utf-8")
    rejects = {json.loads(line)["record"]: json.loads(line) for line in text.splitlines()}
    assert {n: r["reason"] for n, r in rejects.items()} == {3: "duplicate_id", 5: "invalid_text"}
    assert rejects[3]["raw"]["name"] == "Dup\\u200b"  # escaped in LATIN1's staging table
    assert rejects[5]["shard"] == "default"


def test_the_codec_of_each_encoding_a_shard_may_have() -> None:
    assert python_codec("LATIN1") == "iso8859-1"
    assert python_codec("LATIN5") == "iso8859-9"
    assert python_codec("LATIN10") == "iso8859-16"
    assert python_codec("WIN1252") == "cp1252"
    assert python_codec("KOI8R") == "koi8-r"
    assert python_codec("UTF8") is None  # holds any text: nothing to look at
    assert python_codec("SQL_ASCII") is None  # stores the bytes as they come
    # Python's codecs and the server's tables differ by hundreds of characters: the server
    # judges.
    for encoding in ("EUC_JP", "EUC_KR", "EUC_CN", "EUC_JIS_2004", "MULE_INTERNAL", None):
        assert python_codec(encoding) is None


def test_a_rerun_counts_the_rows_a_narrow_shard_refused_when_it_already_holds_the_file(
    narrow_map: tuple[Path, dict[str, str]], run_cli: RunCli, tmp_path: Path
) -> None:
    # The first run reaches default only (db_us's database is not there yet); the re-run
    # finds default holding the file and loads db_us: default's refusal counts again.
    config, dsns = narrow_map
    down = dict(dsns, db_us=dsns["db_us"].replace("dbname=", "dbname=missing_"))
    partial = write_map(tmp_path / "down", shard_map_yaml(down))
    data = tmp_path / "residents.csv"
    data.write_text(
        "id,country,name,gender,age,address\n1,FR,李,F,30,x\n2,FR,B,F,30,x\n3,US,C,F,30,x\n"
    )
    first = run_cli("load", "--max-rejects", "100%", str(data), config=partial)
    assert first.exit_code == 1
    assert "3 read = 1 loaded + 1 rejected + 1 pending" in first.output
    again = run_cli("load", "--max-rejects", "100%", str(data), config=config)
    assert again.exit_code == 0, again.output
    assert "3 read = 2 loaded + 1 rejected" in again.output
    assert "default: already loaded by an earlier run (2 rows, 1 of them rejected then)" in (
        again.output
    )


def test_text_a_narrow_shard_holds_comes_back_whole_in_parquet_and_to_a_forced_reload(
    narrow_map: tuple[Path, dict[str, str]], run_cli: RunCli, tmp_path: Path
) -> None:
    # Parquet and a load's probe take text packed with its sizes (pipeline.packed): sizes
    # in bytes of UTF-8, which a LATIN1 or WIN1252 database does not store ('é' is one byte
    # there, two as sent). Enough rows that default's cross a packed chunk.
    import pyarrow.parquet as pq

    config, _ = narrow_map
    count = 2 * CHUNK_ROWS + 10
    records, refused = _records(count)
    records[1]["gender"] = ""  # a NULL among the text
    path = tmp_path / "residents.csv"
    _write(path, "csv", records)
    load = run_cli("load", "--max-rejects", "100", str(path), config=config)
    assert load.exit_code == 0, load.output
    loaded = count - len(refused)

    parquet, text = tmp_path / "out.parquet", tmp_path / "out.csv"
    for out in (parquet, text):
        result = run_cli("extract", "-o", str(out), config=config)
        assert result.exit_code == 0, result.output
    with text.open(newline="", encoding="utf-8") as f:
        from_csv = [
            {k: v or None for k, v in row.items() if k in ("id", "name", "gender", "address")}
            for row in csv.DictReader(f)
        ]
    from_parquet = pq.read_table(parquet, columns=["id", "name", "gender", "address"]).to_pylist()
    assert [dict(r, id=str(r["id"])) for r in from_parquet] == from_csv
    assert len(from_csv) == loaded
    assert sum("Müller" in (r["name"] or "") for r in from_parquet) > 0
    assert sum("€" in (r["address"] or "") for r in from_parquet) > 0  # WIN1252's, on db_us

    again = run_cli("load", "--force", "--max-rejects", "100", str(path), config=config)
    assert again.exit_code == 0, again.output
    unchanged = [int(n) for n in re.findall(r"(\d+) unchanged", again.output)][:2]
    assert sum(unchanged) == loaded, again.output


def test_a_record_of_an_erased_name_its_shard_cannot_store_quotes_nothing(
    narrow_map: tuple[Path, dict[str, str]], run_cli: RunCli, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Valid by the rules (so not refused when the erasures are matched), refused after by
    # its shard's encoding: a record bearing an erased name still has none of its values
    # quoted, as one the rules refused.
    config, _ = narrow_map
    monkeypatch.setenv("PIPELINE_ERASURE_KEY", "k" * 40)
    erase = ["erase", "--name", "Amelia Clarke", "--age", "29", "--yes"]  # a namesake of 30
    assert run_cli(*erase, config=config).exit_code == 0
    data = tmp_path / "residents.csv"
    data.write_text(
        "id,country,name,gender,age,address\n"
        "1,FR,Amelia Clarke,F,30,ul. Łódzka 5\n2,FR,Bob Stone,M,30,ul. Łódzka 6\n"
    )
    result = run_cli("load", "--max-rejects", "100%", str(data), config=config)
    assert "2 read = 0 loaded + 2 rejected" in result.output, result.output
    text = next(Path("data/rejects").glob("*.ndjson")).read_text(encoding="utf-8")
    rejects = {r["record"]: r for r in map(json.loads, text.splitlines())}
    assert [rejects[n]["reason"] for n in (1, 2)] == ["invalid_text", "invalid_text"]
    assert rejects[1]["raw"] is None and "Łódzka" not in rejects[1]["message"]
    assert "so no value is quoted" in rejects[1]["message"]
    assert rejects[2]["raw"]["address"] == "ul. Łódzka 6"
