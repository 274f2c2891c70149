"""Every load rule broken, in every format, over more than 10,000 generated records.

The shards must hold exactly the rows the rules let through (for an id given twice to one
shard, the last), and the rejects file must name every other record with its number, its
line and its reason. What each record must become is written beside it in its case, by
hand, not computed by the code's rules: this is the reference any write path (today's, or
a faster one) is held to.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result

from pipeline.batches import batches
from pipeline.config import load_rules, load_shard_map
from pipeline.load import load
from pipeline.load_options import LoadOptions
from pipeline.routing import Budget
from pipeline.sources import open_source
from pipeline.writer import REJECTS_BATCH
from tests.conftest import rows, shard_map_yaml, write_map

RunCli = Callable[..., Result]
RECORDS = 12_000  # over 10,000, and several of the writer's fetches of refused rows
assert RECORDS > 5 * REJECTS_BATCH
FIELDS = ("id", "country", "name", "gender", "age", "address")
GENERATED = 10**15  # ids handed out by a shard start here (sql/migrations/0001_residents.sql)
BLANK_EVERY = 1_000  # a blank line after every so many CSV records: not a record, still a line
TOO_LARGE_EVERY = 997  # a field over the 65,536-character limit
# US to db_us; Germany, France and Britain to default; any other country has no route.
ROUTES = "db_us: [US]\n  default: [DE, FR, GB]"


@dataclass
class Case:
    """One record: its fields as written (a missing id is None), and what it must become."""

    fields: dict[str, Any] | None  # None: a record that is not one (format-specific)
    reason: str | None = None  # None: loaded
    shard: str | None = None
    stored: tuple[Any, ...] | None = None  # (country, name, gender, age, address)


def _cases(first: int) -> list[Case]:
    """One cycle of cases; `first` is the record number of the cycle's first record, whose id
    the cycle's later cases reuse."""
    i = first
    name = f"Person {i}"

    def valid(n: int, shard: str, stored: tuple[Any, ...], **fields: Any) -> Case:
        base = {"id": n, "country": "US", "name": name, "gender": "Male", "age": "30",
                "address": f"{n} Main St"}  # fmt: skip
        return Case({**base, **fields}, None, shard, stored)

    def refused(reason: str, **fields: Any) -> Case:
        base = {"id": i, "country": "US", "name": name, "gender": "Male", "age": "30",
                "address": "x"}  # fmt: skip
        return Case({**base, **fields}, reason)

    us = ("US", name, "Male", 30, f"{i} Main St")
    return [
        # 0: a plain US resident; superseded by case 1 below (the same id, later, same shard)
        valid(i, "db_us", us),
        valid(
            i,
            "db_us",
            ("US", name, "Female", 31, "Later St"),
            gender="F",
            age=31,
            address="Later St",
        ),
        # the same id again, refused for its age: it supersedes nothing
        refused("invalid_age", id=i, age="n/a"),
        # the same id on the other shard: ids are unique per shard only
        valid(
            i,
            "default",
            ("DE", name, None, None, "Berlin"),
            country="DE",
            gender="",
            age="",
            address="Berlin",
        ),
        # trims (Unicode white space, zero width space), aliases, "+22", an empty address
        valid(
            i + 4,
            "db_us",
            ("US", f"Zoë {i}", "Female", 22, None),
            country=" usa ",
            name=f"\u00a0 Zoë {i}\u200b",
            gender=" fimale ",
            age="+22",
            address="   ",
        ),
        valid(
            i + 5,
            "default",
            ("DE", name, "Male", 41, "Line 1\nLine 2"),
            country="Germany",
            gender="m",
            age="41.0",
            address="Line 1\nLine 2",
        ),
        valid(
            i + 6,
            "default",
            ("DE", name, "Other", 0, f"{i + 6} Main St"),
            country="deu",
            gender="OTHER",
            age="0",
        ),
        valid(
            i + 7,
            "default",
            ("GB", name, "Male", 150, f"{i + 7} Main St"),
            country="UK",
            age="150",
            id=f"+{i + 7}",
        ),
        # no id: the shard gives one, from 10^15 up
        valid(
            i + 8, "default", ("FR", name, "Male", 30, f"{i + 8} Main St"), country="FR", id=None
        ),
        refused("missing_name", id=i + 9, name="   "),
        refused("invalid_id", id=f"abc{i}"),
        refused("invalid_id", id="0"),
        refused("invalid_id", id=str(GENERATED)),
        refused("invalid_id", id=f"-{i}"),
        refused("invalid_id", id=f"{i}.5"),
        refused("invalid_age", id=i + 15, age="151"),
        refused("invalid_age", id=i + 16, age="-1"),
        refused("invalid_age", id=i + 17, age="22.5"),
        refused("invalid_gender", id=i + 18, gender="Robot"),
        refused("missing_country", id=i + 19, country="  "),
        refused("invalid_country", id=i + 20, country="XX"),
        refused("invalid_country", id=i + 21, country="Atlantis"),
        refused("unrouted_country", id=i + 22, country="JP"),
        Case(None, "malformed_record"),
    ]


def generate(count: int, bulk: bool = False) -> list[Case]:
    """`count` cases; `bulk`: none that the reader itself refuses (a record that is not one,
    a field over its limit), so that the bulk CSV reader (pipeline.source_arrow) takes the
    file rather than leaving it to Python's."""
    cases: list[Case] = []
    while len(cases) < count:
        cases.extend(c for c in _cases(len(cases) + 1) if not bulk or c.fields is not None)
    cases = cases[:count]
    if bulk:
        return _supersede(cases)
    for number in range(TOO_LARGE_EVERY, count + 1, TOO_LARGE_EVERY):
        fields = {"id": number, "country": "US", "name": "n" * 70_000, "gender": "Male",
                  "age": "30", "address": "x"}  # fmt: skip
        cases[number - 1] = Case(fields, "too_large")
    return _supersede(cases)


def _supersede(cases: list[Case]) -> list[Case]:
    """The last valid record of an id on a shard wins; each earlier one is refused."""
    given = [(n, (c.shard, _id(c))) for n, c in enumerate(cases) if c.reason is None and _id(c)]
    last = {key: n for n, key in given}
    for n, key in given:
        if last[key] != n:
            cases[n].reason, cases[n].stored = "duplicate_id", None
    return cases


def _id(case: Case) -> int | None:
    """The id a valid case gives (None: none, the shard makes one)."""
    if case.fields is None or case.fields["id"] is None:
        return None
    return int(str(case.fields["id"]).lstrip("+"))


def write_csv(path: Path, cases: list[Case]) -> dict[int, int]:
    """The cases as CSV; returns each record's first line."""
    lines, line = {}, 2
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for number, case in enumerate(cases, 1):
        start = out.tell()
        if case.fields is None:
            writer.writerow([number, "US", "Extra", "Male", "30", "x", "one field too many"])
        else:
            writer.writerow(["" if case.fields[f] is None else case.fields[f] for f in FIELDS])
        lines[number] = line
        line += out.getvalue().count("\n", start)
        if number % BLANK_EVERY == 0:
            out.write("\n")
            line += 1
    text = out.getvalue()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return lines


def _json_value(case: Case, numbers: bool = True) -> Any:
    if case.fields is None:
        return ["not", "an", "object"]
    if not numbers:  # every value as text: one kind a column, as the bulk reader takes it
        return {k: None if v is None else str(v) for k, v in case.fields.items()}
    # Numbers where a JSON writer would put them: the rules read them as written.
    return {k: int(v) if k == "age" and isinstance(v, str) and v.isdigit() else v
            for k, v in case.fields.items()}  # fmt: skip


def write_ndjson(path: Path, cases: list[Case], numbers: bool = True) -> dict[int, int]:
    with path.open("w", encoding="utf-8") as out:
        for case in cases:
            out.write(json.dumps(_json_value(case, numbers), ensure_ascii=False) + "\n")
    return {n: n for n in range(1, len(cases) + 1)}


def write_ndjson_text(path: Path, cases: list[Case]) -> dict[int, int]:
    return write_ndjson(path, cases, numbers=False)


def write_json(path: Path, cases: list[Case]) -> dict[int, int]:
    path.write_text(json.dumps([_json_value(c) for c in cases], ensure_ascii=False))
    return {}  # lines are not asserted for a JSON array (one value may span many)


WRITERS = {"csv": write_csv, "csv.gz": write_csv, "ndjson": write_ndjson, "json": write_json}
# The same rules broken in a file a bulk reader takes whole (csv, ndjson: records the bulk
# readers refuse, so Python's readers take the file).
BULK_WRITERS = {"csv-bulk": write_csv, "csv.gz-bulk": write_csv, "ndjson-bulk": write_ndjson_text}


@pytest.fixture(scope="module")
def cases() -> list[Case]:
    return generate(RECORDS)


@pytest.fixture(scope="module")
def bulk_cases() -> list[Case]:
    return generate(RECORDS, bulk=True)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [*WRITERS, *BULK_WRITERS])
def test_every_rule_broken_in_every_format_leaves_exactly_the_expected_rows_and_rejects(
    run_cli: RunCli,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fmt: str,
) -> None:
    config = write_map(tmp_path / "routed", shard_map_yaml(shard_dsns, ROUTES, "reject"))
    assert run_cli("init", config=config).exit_code == 0
    bulk = fmt.endswith("-bulk")
    cases: list[Case] = request.getfixturevalue("bulk_cases" if bulk else "cases")
    path = tmp_path / f"people.{fmt.removesuffix('-bulk')}"
    lines = {**WRITERS, **BULK_WRITERS}[fmt](path, cases)
    if bulk:
        assert sum(len(b) for b in batches(open_source(path))) == RECORDS  # no NotSimple

    result = run_cli("load", str(path), "--max-rejects", "100%", "--rejects",
                     str(tmp_path / "rejects"), "--json", config=config)  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    refused = [c for c in cases if c.reason is not None]
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (
        RECORDS, RECORDS - len(refused), len(refused))  # fmt: skip
    # Ids given twice to one shard: its rows go through staging after a first try
    assert summary["shards"]["db_us"]["rejected"] > 0

    found = [json.loads(line) for f in (tmp_path / "rejects").glob("*.ndjson")
             for line in f.read_text(encoding="utf-8").split("\n") if line]  # fmt: skip
    assert {r["record"]: r["reason"] for r in found} == {
        n: c.reason for n, c in enumerate(cases, 1) if c.reason is not None
    }
    assert len(found) == len(refused)
    if lines:
        assert {r["record"]: r["line"] for r in found} == {
            n: lines[n] for n, c in enumerate(cases, 1) if c.reason is not None
        }

    for shard in ("db_us", "default"):
        loaded = [c for c in cases if c.shard == shard and c.reason is None]
        given = {_id(c): c.stored for c in loaded if _id(c) is not None}
        made = Counter(c.stored for c in loaded if _id(c) is None)
        held = rows(shard_dsns[shard])
        assert {r[0]: r[1:] for r in held if r[0] < GENERATED} == given
        assert Counter(r[1:] for r in held if r[0] >= GENERATED) == made
        assert len(held) == len(loaded)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_the_bulk_and_the_python_readers_load_the_same_rows_and_rejects(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path, bulk_cases: list[Case], fmt: str
) -> None:
    """The differential test of the bulk and Python readers of a format: the same file,
    through each, leaves the same rows on every shard and the same rejects file, byte for
    byte (but the load's id)."""
    config = write_map(tmp_path / "routed", shard_map_yaml(shard_dsns, ROUTES, "reject"))
    assert run_cli("init", config=config).exit_code == 0
    path = tmp_path / f"people.{fmt}"
    BULK_WRITERS[f"{fmt}-bulk"](path, bulk_cases)
    assert sum(len(b) for b in batches(open_source(path))) == RECORDS  # no NotSimple
    shard_map = load_shard_map(config)
    outcomes = []
    for bulk in (True, False):
        options = LoadOptions(max_rejects=Budget(100, True), rejects_dir=tmp_path / str(bulk),
                              bulk_read=bulk)  # fmt: skip
        result = load(shard_map, load_rules(shard_map), [path], options)
        assert result.exit_code == 0 and result.rejects_file is not None
        text = result.rejects_file.read_text(encoding="utf-8").replace(result.load_id, "L")
        held = {shard: rows(dsn) for shard, dsn in shard_dsns.items()}
        outcomes.append((text, held, result.files[0].to_json()))
        for dsn in shard_dsns.values():
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE residents, load_ledger RESTART IDENTITY")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0].count("\n") == sum(1 for c in bulk_cases if c.reason is not None)
