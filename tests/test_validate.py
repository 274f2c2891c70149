"""The rules on columns (pipeline.validate), without a database: each field's edge cases,
written out by hand, as the rules in the README state them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from pipeline.batch import Batch
from pipeline.columns import FIELDS
from pipeline.config import ShardMap, load_rules, load_shard_map
from pipeline.routing import Router
from pipeline.rules import Rules, parse_rules
from pipeline.validate import REASONS, Validator
from tests.conftest import PROJECT

SHARD_MAP = load_shard_map(PROJECT / "config" / "shards.yaml")


def judge(rules: Rules, shard_map: ShardMap, **column: list[Any]) -> list[tuple[Any, ...]]:
    """(reason or None, id, country, name, gender, age, address) of each row."""
    n = len(next(iter(column.values())))
    base = {"id": "1", "country": "DE", "name": "Ann", "gender": "", "age": "", "address": ""}
    fields = {f: pa.array(column.get(f, [base[f]] * n), pa.string()) for f in FIELDS}
    numbers = pa.array(list(range(1, n + 1)), pa.int64())
    batch = Batch(numbers, pa.nulls(n, pa.int64()), fields, lambda rows: [])
    names = [s.name for s in shard_map.shards]
    checked = Validator(rules, Router(shard_map, rules), names).check(batch)
    table = checked.table
    out = []
    for i in range(n):
        reason = REASONS[checked.reason[i]]
        values = tuple(table.column(c)[i].as_py() for c in FIELDS)
        out.append((reason.value if reason else None, *values))
    return out


@pytest.fixture(scope="module")
def rules() -> Rules:
    return load_rules(SHARD_MAP)


IDS = {
    "5": (None, 5),
    "+5": (None, 5),
    " 007 ": (None, 7),
    "999999999999999": (None, 999_999_999_999_999),
    "000000000000000005": (None, 5),  # 18 digits
    "0000000000000000005": ("invalid_id", None),  # 19 digits: more than any id needs
    "1000000000000000": ("invalid_id", None),  # the shard's own ids start here
    "0": ("invalid_id", None),
    "-1": ("invalid_id", None),
    "++5": ("invalid_id", None),
    "+": ("invalid_id", None),
    "5.0": ("invalid_id", None),
    "1e3": ("invalid_id", None),
    "\uff11": ("invalid_id", None),  # a fullwidth digit one
    "": (None, None),  # no id: the shard gives one
    "\u200b": (None, None),
}


@pytest.mark.parametrize("text", list(IDS), ids=[repr(t) for t in IDS])
def test_ids(rules: Rules, text: str) -> None:
    (row,) = judge(rules, SHARD_MAP, id=[text])
    assert (row[0], row[1]) == IDS[text]


def test_ids_of_every_kind_in_one_batch(rules: Rules) -> None:
    # Plain digits are cast in bulk, the others by a regular expression: one batch of both.
    rows = judge(rules, SHARD_MAP, id=list(IDS))
    assert [(row[0], row[1]) for row in rows] == list(IDS.values())


AGES = {
    "22": (None, 22),
    "+22": (None, 22),
    "22.0": (None, 22),
    "22.": (None, 22),
    "-0": (None, 0),
    "150": (None, 150),
    "0000000005": (None, 5),  # ten characters
    "00000000005": ("invalid_age", None),  # eleven: more than any age needs
    "+0000000005": ("invalid_age", None),
    "151": ("invalid_age", None),
    "-5": ("invalid_age", None),
    "22.5": ("invalid_age", None),
    ".5": ("invalid_age", None),
    "1e1": ("invalid_age", None),
    "abc": ("invalid_age", None),
    " ": (None, None),
}


@pytest.mark.parametrize("text", list(AGES), ids=[repr(t) for t in AGES])
def test_ages(rules: Rules, text: str) -> None:
    (row,) = judge(rules, SHARD_MAP, age=[text])
    assert (row[0], row[5]) == AGES[text]


def test_ages_of_every_kind_in_one_batch(rules: Rules) -> None:
    rows = judge(rules, SHARD_MAP, age=list(AGES) * 2)
    assert [(row[0], row[5]) for row in rows] == list(AGES.values()) * 2


def test_genders_names_addresses_and_the_order_of_reasons(rules: Rules) -> None:
    found = judge(
        rules,
        SHARD_MAP,
        name=["Ann", " ", "Ann", "Ann", "A\x00", "\u3000Zoë\ufeff"],
        gender=[" fimale ", "F", "Robot", "OTHER", "M", "m"],
        age=["1", "1", "1", "x", "1", "1"],
        address=["  ", "x", "x", "x", "x", " Main St\n"],
    )
    assert found == [
        (None, 1, "DE", "Ann", "Female", 1, None),
        ("missing_name", 1, "DE", None, "Female", 1, "x"),
        ("invalid_gender", 1, "DE", "Ann", None, 1, "x"),
        ("invalid_age", 1, "DE", "Ann", "Other", None, "x"),  # age before gender
        ("invalid_text", 1, "DE", "A\x00", "Male", 1, "x"),
        (None, 1, "DE", "Zoë", "Male", 1, "Main St"),
    ]


def test_any_gender_is_kept_as_written_when_the_rules_accept_any(tmp_path: Path) -> None:
    doc = yaml.safe_load((PROJECT / "config" / "rules.yaml").read_text())
    doc["gender"]["accepted"] = []
    doc["gender"]["aliases"] = {"f": "Female"}
    rules = parse_rules(tmp_path / "rules.yaml", doc)
    found = judge(rules, SHARD_MAP, gender=[" Robot ", "F", ""])
    assert [(r[0], r[4]) for r in found] == [(None, "Robot"), (None, "Female"), (None, None)]


def test_countries_route_and_refuse_once_per_spelling(rules: Rules) -> None:
    found = judge(rules, SHARD_MAP, country=[" usa ", "Germany", "XX", "", "deu", "usa"])
    assert [(r[0], r[2]) for r in found] == [
        (None, "US"),
        (None, "DE"),
        ("invalid_country", None),
        ("missing_country", None),
        (None, "DE"),
        (None, "US"),
    ]
