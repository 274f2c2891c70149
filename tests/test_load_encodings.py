"""Shards whose database encoding is not UTF-8 (pipeline.encodable): a row whose text its
shard's encoding cannot hold is refused alone (`invalid_text`, naming the character and
the encoding), where the server's refusal of the COPY failed the file on that shard; the
rest loads, in every format and across batches."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pipeline.batch import BATCH_RECORDS
from pipeline.encodable import python_codec
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


def test_the_codec_of_each_encoding_a_shard_may_have() -> None:
    assert python_codec("LATIN1") == "iso8859-1"
    assert python_codec("WIN1252") == "cp1252"
    assert python_codec("UTF8") is None  # holds any text: nothing to look at
    assert python_codec("SQL_ASCII") is None  # stores the bytes as they come
    assert python_codec("MULE_INTERNAL") is None  # no codec: the server judges
    assert python_codec(None) is None
