"""`pipeline erase`: a person removed from every shard stays out of later loads, and
`pipeline check` finds them if they come back; the keyed hashes match in Python and SQL."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pipeline import erase as erase_module
from pipeline import erased as erased_module
from pipeline.config import load_shard_map
from pipeline.db import LOCK_LOAD
from pipeline.erased import MAX_TEXTS
from pipeline.erasure_key import (
    LEVELS,
    ErasureKey,
    erasure_key,
    normalised,
    person_message,
)
from pipeline.errors import ConfigError
from pipeline.queries import ERASE
from tests.conftest import (
    ORIGINAL_DATA,
    Connect,
    RunCli,
    closed_port,
    rows,
    shard_map_yaml,
    write_map,
)
from tests.test_docs import ERASE_DONE, ERASE_SHOWN, readme_examples
from tests.test_load import read_rejects

KEY = "0123456789abcdef" * 4
AMELIA = "Amelia Clarke"  # default:17, GB, 29, "12 King's Road, London"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """An erasure key in PIPELINE_ERASURE_KEY."""
    monkeypatch.setenv("PIPELINE_ERASURE_KEY", KEY)
    return KEY


def log(dsn: str) -> list[tuple[Any, ...]]:
    """(fields, reference, target set, the erasure's columns as text) of each erasure on a
    shard: the same on every shard (when each shard recorded it is not)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT fields, reference, target_hash <> '', (person_hash, target_hash, fields,"
            " name_hash, key_id, reference, erased_at)::text"
            " FROM erasure_log ORDER BY erased_at, person_hash"
        ).fetchall()


def ids(dsn: str) -> list[int]:
    return [r[0] for r in rows(dsn)]


# -- erasing --------------------------------------------------------------------------------


def test_erase_by_shard_id_removes_the_row_and_records_it_on_every_shard(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str]
) -> None:
    result = run_cli("erase", "default:17", "--reference", "GDPR-1", "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "default: removed 1 row(s): 17 (GB); erasure log +1",
        "db_us: removed 0 row(s); erasure log +1",
        "erased 1 row(s); 1 erasure(s) (by id) recorded on every shard (reference GDPR-1)",
    ]
    assert ids(shard_dsns["default"]) == [1, 2, 22, 25]
    assert ids(shard_dsns["db_us"]) == [1, 2, 21, 23]
    for dsn in shard_dsns.values():
        (entry,) = log(dsn)
        assert entry[:3] == ("name+age+address", "GDPR-1", True)
        # No personal data in the clear: hashes, the level, the time, the reference.
        assert "amelia" not in entry[3].lower() and "king" not in entry[3].lower()
    # Done is done: the same command again removes nothing and records nothing twice.
    again = run_cli("erase", "default:17", "--reference", "GDPR-1", "--yes")
    assert again.exit_code == 0, again.output
    assert "default:17: erased earlier (in the erasure log)" in again.output
    assert all(len(log(dsn)) == 1 for dsn in shard_dsns.values())


def test_erase_by_match_finds_the_person_on_both_shards(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str], connect: Connect
) -> None:
    # John Smith, 45, also lives in Canada (on default), at another address.
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " VALUES (90, 'CA', 'JOHN SMITH', 45, '1 Bay St, Toronto'),"
            " (91, 'CA', 'John Smith', 46, NULL)"
        )
    result = run_cli(
        "erase", "--name", "  john smith ", "--age", "45", "--json", "--yes", "--reference", "T-7"
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["fields"] == "name+age" and found["rows"] == 2 and found["applied"]
    assert found["shards"]["default"] == {
        "rows": [{"id": 90, "country": "CA"}],
        "recorded": 1,
        "error": None,
    }
    assert found["shards"]["db_us"]["rows"] == [{"id": 1, "country": "US"}]
    assert "john" not in result.stdout.lower()  # ids and counts, never the person
    assert ids(shard_dsns["default"]) == [1, 2, 17, 22, 25, 91]  # 46 is someone else
    assert ids(shard_dsns["db_us"]) == [2, 21, 23]
    assert [e[:3] for e in log(shard_dsns["db_us"])] == [("name+age", "T-7", False)]


def test_without_yes_nothing_changes(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str]
) -> None:
    before = {name: rows(dsn) for name, dsn in shard_dsns.items()}
    result = run_cli("erase", "--name", "maria garcia")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "default: would remove 0 row(s)",
        "db_us: would remove 1 row(s): 2 (US)",
        "would record 1 erasure(s) (by name) in every shard's erasure log; nothing changed:"
        " add --yes to remove",
    ]
    assert {name: rows(dsn) for name, dsn in shard_dsns.items()} == before
    assert all(log(dsn) == [] for dsn in shard_dsns.values())


def test_the_readmes_example_prints_what_it_shows(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str]
) -> None:
    shown = dict(readme_examples())
    for command in (ERASE_SHOWN, ERASE_DONE):
        result = run_cli(*shlex.split(command)[1:])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == shown[command]
    assert 17 not in ids(shard_dsns["default"])


def test_without_a_key_erase_refuses_and_says_how_to_make_one(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPELINE_ERASURE_KEY", raising=False)
    result = run_cli("erase", "default:17", "--yes")
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("Error: pipeline erase needs the erasure key, and none is set:")
    assert "secrets.token_hex(32)" in line and "chmod 600" in line
    assert 17 in ids(shard_dsns["default"])


@pytest.mark.parametrize(
    "args",
    [
        ("default:x",),
        ("default",),
        ("nowhere:1",),
        ("default:1", "--name", "X"),
        ("--age", "3"),
        ("--name", "   "),
        ("--name", "X", "--age", "200"),
        ("--name", "X", "--address", " "),
        ("default:1", "--reference", "two\nlines"),
        (),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    run_cli: RunCli, offline_map: Path, key: str, args: tuple[str, ...]
) -> None:
    result = run_cli("erase", *args, config=offline_map)
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and result.output.startswith("Error: ")
    said = {
        (): "; nothing to erase",
        ("--age", "3"): "--age and --address go with --name",
        ("nowhere:1",): "nowhere:1: no shard named 'nowhere'",
    }
    assert said.get(args, "") in result.output
    if args == ("nowhere:1",):
        assert result.output.rstrip().endswith("(see `pipeline erase --help`)")


def test_a_shard_id_that_names_nobody_exits_1(run_cli: RunCli, loaded: None, key: str) -> None:
    result = run_cli("erase", "default:99", "default:17")
    assert result.exit_code == 1
    assert "Error: default:99: no such resident, and no erasure of it in the log" in result.output
    assert "default: would remove 1 row(s): 17 (GB)" in result.output


def test_a_shard_that_fails_mid_erase_is_completed_by_a_rerun(
    run_cli: RunCli,
    loaded: None,
    key: str,
    shard_dsns: dict[str, str],
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(erase_module, "LOCK_TIMEOUT", "1s")
    # A load holds db_us's lock for longer than the erase will wait: db_us fails in its
    # transaction, after it has read what to erase; default commits.
    with connect("db_us") as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_LOAD])
        failed = run_cli("erase", "default:17", "db_us:21", "--reference", "R-1", "--yes")
        holder.execute("ROLLBACK")
    assert failed.exit_code == 1
    assert "Error: shard db_us: " in failed.output
    assert "re-running the same command completes it" in failed.output
    assert ids(shard_dsns["default"]) == [1, 2, 22, 25]
    assert ids(shard_dsns["db_us"]) == [1, 2, 21, 23]  # rolled back: row and log
    assert log(shard_dsns["db_us"]) == [] and len(log(shard_dsns["default"])) == 2
    # The check sees the erase left incomplete.
    check = run_cli("check", "--only", "erasures")
    assert check.exit_code == 1
    assert "FAIL  error  erasures  [db_us]" in check.output

    again = run_cli("erase", "default:17", "db_us:21", "--reference", "R-1", "--yes")
    assert again.exit_code == 0, again.output
    assert again.output.splitlines() == [
        "default: removed 0 row(s); erasure log +0",
        "db_us: removed 1 row(s): 21 (US); erasure log +2",
        "default:17: erased earlier (in the erasure log)",
        "erased 1 row(s); 0 erasure(s) (by id) recorded on every shard (reference R-1)",
    ]
    assert ids(shard_dsns["db_us"]) == [1, 2, 23]
    first, second = log(shard_dsns["default"]), log(shard_dsns["db_us"])
    assert len(first) == 2 and sorted(first) == sorted(second)  # never doubled, the same rows
    assert run_cli("check", "--only", "erasures").exit_code == 0


def test_an_erase_with_a_shard_not_answering_changes_nothing_until_every_shard_does(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Were default to erase and log alone, a later load with default down would find no
    # erasure in db_us's log, and take the person back there.
    down = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} connect_timeout=3")
    config = write_map(tmp_path / "down", shard_map_yaml(down))
    held = run_cli("erase", "--name", AMELIA, "--yes", config=config)
    assert held.exit_code == 1, held.output
    assert "default: would remove 1 row(s): 17 (GB)" in held.output
    assert "nothing changed: an erasure must reach every shard's erasure log" in held.output
    assert "Error: shard db_us: unreachable" in held.output
    assert 17 in ids(shard_dsns["default"]) and log(shard_dsns["default"]) == []
    as_json = json.loads(
        run_cli("erase", "--name", AMELIA, "--yes", "--json", config=config).stdout
    )
    assert (as_json["applied"], as_json["withheld"], as_json["rows"]) == (False, True, 1)
    done = run_cli("erase", "--name", AMELIA, "--yes")  # every shard answers
    assert done.exit_code == 0, done.output
    assert 17 not in ids(shard_dsns["default"])
    assert len(log(shard_dsns["default"])) == len(log(shard_dsns["db_us"])) == 1


def test_a_row_changed_while_it_is_erased_is_not_removed_unrecorded(
    run_cli: RunCli,
    loaded: None,
    key: str,
    shard_dsns: dict[str, str],
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = erase_module._apply

    def load_meanwhile(*args: Any) -> Any:
        # Between the read and the delete, a load corrects the row's address.
        if args[1].name == "default":
            with connect("default") as conn:
                conn.execute("UPDATE residents SET address = 'New Street 1' WHERE id = 17")
        return real(*args)

    monkeypatch.setattr(erase_module, "_apply", load_meanwhile)
    result = run_cli("erase", "default:17", "--yes")
    assert result.exit_code == 1
    assert "resident 17 changed while it was being erased" in result.output
    assert 17 in ids(shard_dsns["default"]) and log(shard_dsns["default"]) == []
    monkeypatch.setattr(erase_module, "_apply", real)
    again = run_cli("erase", "default:17", "--yes")
    assert again.exit_code == 0, again.output
    assert 17 not in ids(shard_dsns["default"])
    # Both versions of the person are kept out, on every shard.
    assert len(log(shard_dsns["default"])) == len(log(shard_dsns["db_us"])) == 2
    assert run_cli("check", "--only", "erasures").exit_code == 0


# -- erased stays erased: the load ----------------------------------------------------------


def test_erase_then_reload_the_original_file_the_person_stays_gone(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    # An erased row is a reject like any other: 1 of 9 is over the default 10% budget.
    result = run_cli("load", "--force", "--max-rejects", "1", str(ORIGINAL_DATA))
    assert result.exit_code == 0, result.output
    assert "total: 9 read = 8 loaded + 1 rejected" in result.output
    assert "shard default: 0 inserted, 0 updated, 4 unchanged" in result.output
    assert 17 not in ids(shard_dsns["default"])
    (reject,) = read_rejects(tmp_path / "data" / "rejects")
    assert reject["reason"] == "erased" and reject["shard"] == "default"
    assert reject["record"] == 3 and "line" in reject  # a JSON array has no lines
    assert reject["raw"] is None  # the person's data copied nowhere again
    assert not any(AMELIA in f.read_text() for f in (tmp_path / "data" / "rejects").iterdir())
    # The same person, written otherwise, is the same person; a namesake of another age not.
    changed = tmp_path / "again.ndjson"
    records = [
        {"id": 70, "country": "FR", "name": " AMELIA clarke ", "age": 29,
         "address": "12 KING'S ROAD, LONDON"},
        {"id": 71, "country": "FR", "name": AMELIA, "age": 30},
    ]  # fmt: skip
    changed.write_text("".join(json.dumps(r) + "\n" for r in records))
    second = run_cli("load", "--json", "--max-rejects", "1", "--connect-timeout", "5", str(changed))
    assert json.loads(second.stdout)["rows_rejected"] == 1
    assert 70 not in ids(shard_dsns["default"]) and 71 in ids(shard_dsns["default"])


def test_a_record_of_an_erased_name_refused_for_another_fault_keeps_no_raw_record(
    run_cli: RunCli, loaded: None, key: str, tmp_path: Path
) -> None:
    # Its age unreadable, its gender or its country wrong: refused for that, it may be the
    # erased person all the same, and its raw record is left out. A namesake's too (the
    # name is all an unreadable age leaves); another name's refusal keeps its record.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    records = [
        {"id": 80, "country": "FR", "name": " amelia CLARKE", "age": "twenty-nine"},
        {"id": 81, "country": "FR", "name": AMELIA, "age": 29, "gender": "Zzz"},
        {"id": 82, "country": "XX", "name": AMELIA, "age": 29},
        {"id": 83, "country": "FR", "name": "Bob Stone", "age": 29, "gender": "Zzz"},
        # A namesake of another age, whose id comes again: refused on the shard, later.
        {"id": 84, "country": "FR", "name": " AMELIA clarke", "age": 40},
        {"id": 84, "country": "FR", "name": "Bob Stone", "age": 41},
    ]
    path = tmp_path / "faulty.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_cli("load", "--max-rejects", "100%", str(path))
    assert "6 read = 1 loaded + 5 rejected" in result.output, result.output
    rejects = {r["record"]: r for r in read_rejects(tmp_path / "data" / "rejects")}
    assert [rejects[n]["reason"] for n in (1, 2, 3, 4, 5)] == [
        "invalid_age", "invalid_gender", "invalid_country", "invalid_gender", "duplicate_id"
    ]  # fmt: skip
    assert [rejects[n]["raw"] for n in (1, 2, 3, 5)] == [None, None, None, None]
    for n in (1, 2, 3, 5):  # nor any value of theirs in the message
        assert "so no value is quoted" in rejects[n]["message"]
        assert not [v for v in ("twenty-nine", "Zzz", "XX") if v in rejects[n]["message"]]
    assert rejects[4]["raw"] == records[3] and "'Zzz'" in rejects[4]["message"]
    assert not any(
        "amelia" in f.read_text().lower() for f in (tmp_path / "data" / "rejects").iterdir()
    )


def test_a_delete_marker_bearing_an_erased_name_is_taken(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The system of record erased her too, and says so with a marker that still bears her
    # fields: a marker stores nothing, so it is taken (her row is gone: not found), where
    # a record that would load her again is refused.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    held = ids(shard_dsns["default"])
    path = tmp_path / "changes.csv"
    path.write_text(
        "id,country,name,gender,age,address,_op\n"
        f'17,GB,{AMELIA},F,29,"12 King\'s Road, London",delete\n'
        f"{held[0]},FR,{AMELIA},F,29,,delete\n"
        f'90,GB,{AMELIA},F,29,"12 King\'s Road, London",\n'
    )
    result = run_cli("load", "--max-rejects", "100%", str(path))
    assert "3 read = 2 loaded + 1 rejected" in result.output, result.output
    assert "  default: 0 inserted, 0 updated, 0 unchanged, 1 rejected, 1 deleted, 1 not found" in (
        result.output
    )
    (reject,) = read_rejects(tmp_path / "data" / "rejects")
    assert (reject["record"], reject["reason"], reject["raw"]) == (3, "erased", None)
    assert ids(shard_dsns["default"]) == held[1:]


def test_a_record_the_reader_refuses_bearing_an_erased_name_quotes_nothing(
    run_cli: RunCli, loaded: None, key: str, tmp_path: Path
) -> None:
    # Refused before any field is read as the name (a comma too many, a list for a value):
    # every text of the record is tried against the erased names.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    csv_path = tmp_path / "shifted.csv"
    csv_path.write_text(
        "id,country,name,gender,age,address\n"
        "85,GB,Amelia Clarke,F,29,12 Rosewood Lane, Leeds\n"
        "86,GB,Bob Stone,M,40,1 High Street, Leeds\n"
    )
    ndjson_path = tmp_path / "nested.ndjson"
    ndjson_path.write_text(
        json.dumps({"id": 87, "country": "FR", "name": " amelia CLARKE", "address": ["x"]})
        + "\n"
        + json.dumps({"id": 88, "country": "FR", "name": "Bob Stone", "address": ["y"]})
        + "\n"
    )
    # Kept as read, as text: a line that is no JSON, a column named twice, a bare string.
    amelia = {"id": 30, "country": "GB", "name": "Amelia Clarke", "age": 29}
    text_path = tmp_path / "texts.ndjson"
    text_path.write_text(
        json.dumps(amelia)[:-1]
        + ', "address": "12 King\'s Road"\n'  # no closing brace
        + '{"name": "Amelia Clarke", "country": "GB", " Name": "Amelia Clarke"}\n'
        + '"Amelia Clarke, 29, 12 King\'s Road"\n'
        + '{"name": "Bob", " Name": "x", "country": "GB", "address": "a\\ud800"}\n'
    )
    result = run_cli("load", "--max-rejects", "100%", str(text_path))
    assert "4 read = 0 loaded + 4 rejected" in result.output, result.output
    many = tmp_path / "many.ndjson"  # more texts than are tried: none quoted
    many.write_text(
        json.dumps({"id": 89, "country": "FR", "name": "Bob", "address": ["a"] * MAX_TEXTS})
    )
    for path in (csv_path, ndjson_path, many):
        result = run_cli("load", "--max-rejects", "100%", str(path))
        assert f"{1 if path == many else 2} read = 0 loaded" in result.output, result.output
    rejects = {
        (Path(r["file"]).name, r["record"]): r for r in read_rejects(tmp_path / "data" / "rejects")
    }
    for name in ("shifted.csv", "nested.ndjson"):
        erased, other = rejects[(name, 1)], rejects[(name, 2)]
        assert erased["reason"] == other["reason"] == "malformed_record"
        assert erased["raw"] is None and "so no value is quoted" in erased["message"]
        assert "Bob Stone" in json.dumps(other["raw"])
    assert rejects[("many.ndjson", 1)]["raw"] is None
    assert [rejects[("texts.ndjson", n)]["raw"] for n in (1, 2, 3)] == [None, None, None]
    # Bob's, a lone surrogate and all, is quoted: as its JSON escape, which reads back.
    assert rejects[("texts.ndjson", 4)]["raw"]["address"] == "a\ud800"
    assert not any(
        "amelia" in f.read_text().lower() for f in (tmp_path / "data" / "rejects").iterdir()
    )


def test_refused_records_past_the_search_budget_quote_nothing_unsearched(
    run_cli: RunCli, loaded: None, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each of these rows holds 13 texts to try (7 fields, 6 pairs): the first is searched
    # and quoted; past MAX_TRIED texts, the others quote nothing, and say why.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    monkeypatch.setattr(erased_module, "MAX_TRIED", 20)
    path = tmp_path / "shifted.csv"
    path.write_text(
        "id,country,name,gender,age,address\n"
        + "".join(f"{90 + n},GB,Bob Stone,M,40,1 High Street, Leeds\n" for n in range(3))
        + "93,GB,"
        + "y" * (1 << 20)
        + "\n"  # over max_line: nothing kept, nothing to search
    )
    result = run_cli("load", "--max-rejects", "100%", str(path))
    assert "4 read = 0 loaded + 4 rejected" in result.output, result.output
    rejects = sorted(read_rejects(tmp_path / "data" / "rejects"), key=lambda r: r["record"])
    assert [r["reason"] for r in rejects] == ["malformed_record"] * 3 + ["too_large"]
    assert "Bob Stone" in json.dumps(rejects[0]["raw"])
    for r in rejects[1:3]:
        assert r["raw"] is None and "too many refused records to search" in r["message"]
    assert rejects[3]["raw"] is None and "a line longer than" in rejects[3]["message"]


def test_init_gives_a_shard_the_erasures_its_log_lacks(
    run_cli: RunCli,
    loaded: None,
    key: str,
    shard_dsns: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shard added to the map starts with an empty log (here db_us's, emptied by hand):
    # the erasures check fails on it until init records the others' erasures there. No key
    # is needed for that: it copies hashes.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    assert run_cli("erase", "--name", "Nobody Known", "--yes").exit_code == 0
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        conn.execute("DELETE FROM erasure_log")
    assert run_cli("check", "--only", "erasures").exit_code == 1
    monkeypatch.delenv("PIPELINE_ERASURE_KEY")
    result = run_cli("init")
    assert result.exit_code == 0, result.output
    assert "db_us: recorded 2 erasure(s) the other shards' logs hold" in result.output
    assert "default: recorded" not in result.output
    assert log(shard_dsns["db_us"]) == log(shard_dsns["default"])
    again = run_cli("init")  # nothing lacking: nothing said
    assert again.exit_code == 0 and "recorded" not in again.output
    monkeypatch.setenv("PIPELINE_ERASURE_KEY", key)
    assert run_cli("check", "--only", "erasures").exit_code == 0


def test_init_gives_a_shard_the_erasures_of_a_shard_whose_own_init_failed(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The map moves DE to db_us: default's init fails (its DE rows break its new rule),
    # db_us's succeeds; the erasure only default's log holds still goes to db_us.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        conn.execute("DELETE FROM erasure_log")
    moved = write_map(tmp_path / "moved", shard_map_yaml(shard_dsns, "db_us: [US, DE]"))
    result = run_cli("init", config=moved)
    assert result.exit_code == 1 and "Error: shard default" in result.output, result.output
    assert "db_us: recorded 1 erasure(s) the other shards' logs hold" in result.output
    assert log(shard_dsns["db_us"]) == log(shard_dsns["default"])


def test_a_load_with_erasures_and_no_key_refuses(
    run_cli: RunCli, loaded: None, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("erase", "--name", AMELIA, "--yes").exit_code == 0
    monkeypatch.delenv("PIPELINE_ERASURE_KEY")
    result = run_cli("load", "--force", str(ORIGINAL_DATA))
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("Error: the erasure log holds 1 erasure(s) and no erasure key is set")


def test_a_load_under_another_key_refuses(
    run_cli: RunCli, loaded: None, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("erase", "--name", AMELIA, "--yes").exit_code == 0
    monkeypatch.setenv("PIPELINE_ERASURE_KEY", "another key of more than 32 characters")
    result = run_cli("load", "--force", str(ORIGINAL_DATA))
    assert result.exit_code == 2
    assert "made with another erasure key" in result.output
    check = run_cli("check", "--only", "erasures")
    assert check.exit_code == 1
    assert "cannot verify 1 erasure(s) made with another erasure key" in check.output
    assert run_cli("erase", "default:1").exit_code == 2  # nor may erase add to it


def test_an_empty_log_costs_the_load_nothing(config_file: Path, loaded: None) -> None:
    from pipeline.erased import read_erasures

    # No erasure: no key needed, and nothing for the load to do a row.
    assert read_erasures(load_shard_map(config_file)).key is None


# -- the check --------------------------------------------------------------------------------


def test_the_erasures_check_fails_when_an_erased_person_is_put_back_by_hand(
    run_cli: RunCli, loaded: None, key: str, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("check", "--only", "erasures").exit_code == 0  # an empty log: free
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    assert run_cli("check", "--only", "erasures").exit_code == 0
    with connect("db_us") as conn:  # past the load: by hand, on the other shard
        conn.execute(
            "INSERT INTO residents (id, country, name, gender, age, address) VALUES"
            " (500, 'US', ' amelia CLARKE', 'Female', 29, '12 King''s Road, London')"
        )
    result = run_cli("check", "--only", "erasures")
    assert result.exit_code == 1
    assert "FAIL  error  erasures  [db_us]  1 failing (500)" in result.output
    assert "PASS  error  erasures  [default]" in result.output
    assert "King" not in result.output
    # Without the key it cannot verify: it fails, and says why.
    monkeypatch.delenv("PIPELINE_ERASURE_KEY")
    blind = run_cli("check", "--only", "erasures")
    assert blind.exit_code == 1
    assert "cannot verify 1 erasure(s): no erasure key" in blind.output


# -- the key and the hashes (no database) -------------------------------------------------


def test_the_hash_normalises_as_the_load_trims_and_lowers_a_to_z_only() -> None:
    assert normalised("\u3000 Amelia CLARKE\u200b ") == b"amelia clarke"
    assert normalised("ÉMILE Zola") == "Émile zola".encode()  # É is compared as written
    assert normalised(None) == b""
    assert person_message("name+age+address", "Jo", 5, None) == b"name+age+address\x1ejo\x1f5\x1f"
    assert person_message("name+address", "Jo", 5, "X") == b"name+address\x1ejo\x1fx"
    k = ErasureKey(KEY.encode())
    assert k.person_hash("name", "JO") == k.person_hash("name", " jo ") == k.name_hash("jo")
    assert k.person_hash("name", "jo") != k.person_hash("name+age", "jo")
    assert k.name_hashes(["Jo", None, "Émile"]) == [k.name_hash("Jo"), b"", k.name_hash("Émile")]
    assert ErasureKey(b"another" * 10).name_hash("jo") != k.name_hash("jo")
    assert "secret" not in repr(k) and KEY not in repr(k)


def _map(folder: Path, extra: str = "") -> Path:
    dsns = {"default": "host=/nowhere dbname=a", "db_us": "host=/nowhere dbname=b"}
    return write_map(folder / "config", shard_map_yaml(dsns) + extra)


@pytest.fixture
def no_key_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PIPELINE_ERASURE_KEY", raising=False)
    yield


def test_the_key_file_must_be_private_long_enough_and_outside_the_project(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, no_key_env: None
) -> None:
    outside = tmp_path_factory.mktemp("keys") / "erasure.key"
    config = _map(tmp_path, f"erasure_key_file: {outside}\n")
    with pytest.raises(ConfigError, match=r"erasure key file not found .*token_hex"):
        erasure_key(load_shard_map(config))
    outside.write_text(KEY + "\n")
    outside.chmod(0o644)
    with pytest.raises(ConfigError, match="may be read by others: chmod 600"):
        erasure_key(load_shard_map(config))
    outside.chmod(0o600)
    found = erasure_key(load_shard_map(config))
    assert found == ErasureKey(KEY.encode())
    outside.write_text("short\n")
    with pytest.raises(ConfigError, match="at least 32 characters"):
        erasure_key(load_shard_map(config))
    inside = _map(tmp_path, f"erasure_key_file: {tmp_path / 'erasure.key'}\n")
    with pytest.raises(ConfigError, match="erasure_key_file: the key must live outside"):
        load_shard_map(inside)
    with pytest.raises(ConfigError, match="erasure_key_file: expected an absolute"):
        load_shard_map(_map(tmp_path, "erasure_key_file: erasure.key\n"))
    assert erasure_key(load_shard_map(_map(tmp_path))) is None
    environ = {**os.environ, "PIPELINE_ERASURE_KEY": "e" * 40}
    assert erasure_key(load_shard_map(config, environ)) == ErasureKey(b"e" * 40)  # env first


def test_the_servers_hash_is_pythons_for_any_text(connect: Connect, initialised: None) -> None:
    people = [
        ("Chloé Tremblay", 22, "400 Rue Sainte-Catherine, Montréal"),
        ("  JOHN smith \t", None, None),
        ("Олена Коваленко", 34, "вул. Хрещатик 22"),
        ("ÉMILE Zola", 0, ""),
        ("İstanbul ǅemal ß Σίσυφος", 150, "東京都"),
    ]
    k = ErasureKey(KEY.encode() * 2)  # longer than a block: HMAC hashes the key first
    with connect("default") as conn:
        conn.execute("CREATE TEMP TABLE p (name text, age smallint, address text)")
        conn.cursor().executemany("INSERT INTO p VALUES (%s, %s, %s)", people)
        for level in LEVELS:
            person = ERASE.person.format(fields=sql.Literal(level), row=sql.Identifier("r"))
            query = sql.SQL("SELECT {} FROM p AS r").format(person)
            found = [bytes(r[0]) for r in conn.execute(query, k.pads())]
            assert found == [k.person_hash(level, *p) for p in people], level


def test_a_name_cut_by_an_unquoted_comma_is_still_found(
    run_cli: RunCli, loaded: None, key: str, tmp_path: Path
) -> None:
    assert run_cli("erase", "--name", "Clarke, Amelia", "--yes").exit_code == 0
    path = tmp_path / "cut.csv"
    path.write_text(
        "id,country,name,gender,age,address\n31,GB,Clarke, Amelia,F,29,12 King's Road\n"
    )
    result = run_cli("load", "--max-rejects", "100%", str(path))
    assert "1 read = 0 loaded + 1 rejected" in result.output, result.output
    (reject,) = read_rejects(tmp_path / "data" / "rejects")
    assert reject["reason"] == "malformed_record" and reject["raw"] is None


def test_init_says_what_it_recorded_where_another_shard_refused(
    run_cli: RunCli, loaded: None, key: str, shard_dsns: dict[str, str]
) -> None:
    # Each log lacks one of the other's erasures; db_us refuses to take any: default's
    # recording is said, and db_us's refusal, exit 1.
    assert run_cli("erase", "default:17", "--yes").exit_code == 0
    assert run_cli("erase", "--name", "Nobody Known", "--yes").exit_code == 0
    with psycopg.connect(shard_dsns["default"]) as conn:
        conn.execute("DELETE FROM erasure_log WHERE fields = 'name'")
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        conn.execute("DELETE FROM erasure_log WHERE fields <> 'name'")
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'refused by trigger'; END$$"
        )
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON erasure_log EXECUTE FUNCTION refuse()")
    result = run_cli("init")
    assert result.exit_code == 1
    assert "default: recorded 1 erasure(s) the other shards' logs hold" in result.output
    assert "Error: shard db_us" in result.output and "refused by trigger" in result.output
    assert len(log(shard_dsns["default"])) == 2 and len(log(shard_dsns["db_us"])) == 1
