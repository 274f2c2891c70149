"""The rules of config/rules.yaml on whole columns: one batch of records in, each row's
normalised values, its shard and (for a refused row) its reason out.

This is the one implementation of the record rules (the country is looked up once per
distinct spelling through pipeline.routing.Router). Every reader hands its records over as
a `Batch` of text columns, so CSV read by pyarrow, CSV read by Python's csv module, JSON and
NDJSON are all judged by the same code. What a rule needs to see of the whole file (the
same id twice for one shard) is found by the shard (pipeline.writer).

The rules, on each field trimmed of pipeline.rules.TRIM (an empty field is missing):
- id: missing (the shard hands one out), or `+`? and at most 18 digits, from 1 to 10^15-1;
- name: required; gender: an alias or accepted value (case-insensitively), or any value
  when the rules accept any; age: a whole number ("22", "+22", "22.0") in the rules' range;
- a field holding a NUL character is refused (PostgreSQL text cannot hold one);
- the op column (rules: op_column), when there: upsert, delete or empty, in any case; a delete
  marker (`deleting`) needs an id and a country, and nothing else is checked.
A row is refused for the first of: its country, a NUL, invalid_op, missing_name,
invalid_id, invalid_age, invalid_gender.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.batch import Batch
from pipeline.columns import FIELDS
from pipeline.reasons import RejectReason
from pipeline.routing import Router
from pipeline.rules import TRIM, Rules
from pipeline.source_file import OP

MAX_ID = 999_999_999_999_999  # ids from 10^15 up are the shard's own (0001_residents.sql)
ID_DIGITS = 18  # more digits cannot be a valid id, and could overflow the cast
AGE_DIGITS = 10
NUL_MESSAGE = "PostgreSQL text fields cannot contain NUL (0x00) bytes"

# The reasons this module gives, by their code in `Checked.reason` (0: none).
REASONS: tuple[RejectReason | None, ...] = (
    None,
    RejectReason.INVALID_TEXT,
    RejectReason.MISSING_NAME,
    RejectReason.INVALID_ID,
    RejectReason.INVALID_AGE,
    RejectReason.INVALID_GENDER,
    RejectReason.MISSING_COUNTRY,
    RejectReason.INVALID_COUNTRY,
    RejectReason.UNROUTED_COUNTRY,
    RejectReason.INVALID_OP,
    RejectReason.ERASED,  # given by pipeline.erased, after the rules
    RejectReason.RENUMBERED_ID,  # given by pipeline.renumbered, after the rules
)
_CODE = {reason: code for code, reason in enumerate(REASONS)}

# The columns a shard's rows are written with (pipeline.writer), in this order.
OUTPUT = ("id", "country", "name", "gender", "age", "address")


@dataclass
class Checked:
    """A batch judged: `table` the normalised columns (OUTPUT) beside the record and line
    numbers and the fields as read (`raw_<field>`), `reason` a code into REASONS for each
    row (0: valid), `shard` the index of its shard in the map (-1: none), `messages` what
    the rejects file says for the country refusals, by row."""

    batch: Batch
    table: pa.Table
    reason: np.ndarray
    shard: np.ndarray
    country_messages: dict[int, str]
    # What the rejects file says for rows refused for their shard alone (pipeline.encodable):
    # they count on that shard, as the rules' other refusals do.
    shard_messages: dict[int, str] = field(default_factory=dict)
    # Rows that bear an erased person's name (marked by pipeline.erased): refused for a
    # fault of their own, the rejects file quotes none of their values, as an erased one's.
    unquoted: set[int] = field(default_factory=set)

    def refused(self) -> np.ndarray:
        return np.flatnonzero(self.reason)

    def valid_for(self, shard: int) -> np.ndarray | None:
        """Which rows are valid and go to this shard (None: none do)."""
        mask = (self.reason == 0) & (self.shard == shard)
        return mask if mask.any() else None


class Validator:
    """The rules of one load, ready for batch after batch (the router's cache and the gender
    map are built once)."""

    def __init__(self, rules: Rules, router: Router, shard_names: list[str]) -> None:
        self.rules = rules
        self.router = router
        self._shard_index = {name: i for i, name in enumerate(shard_names)}
        canonical = {g.casefold(): g for g in rules.genders}
        mapping = {**canonical, **rules.gender_aliases}
        self._gender_keys = pa.array(list(mapping), pa.string())
        self._gender_values = pa.array(list(mapping.values()), pa.string())

    def check(self, batch: Batch) -> Checked:
        n = len(batch)
        fields = batch.fields
        trimmed = {name: _trimmed(fields[name]) for name in FIELDS if name != "country"}
        reason = np.zeros(n, dtype=np.int8)

        ids, id_bad = _ids(trimmed["id"])
        ages, age_bad = self._ages(trimmed["age"])
        genders, gender_bad = self._genders(trimmed["gender"])
        name = trimmed["name"]
        deleting, op_bad = _ops(fields.get(OP), n)
        upserting = ~deleting
        # Later rules first: an earlier rule's reason overwrites a later one's. A delete
        # marker needs only an id (and a country, to find its shard).
        for code, bad in (
            (RejectReason.INVALID_GENDER, as_mask(gender_bad) & upserting),
            (RejectReason.INVALID_AGE, as_mask(age_bad) & upserting),
            (RejectReason.INVALID_ID, as_mask(id_bad) | (deleting & as_mask(pc.is_null(ids)))),
            (RejectReason.MISSING_NAME, as_mask(pc.is_null(name)) & upserting),
            (RejectReason.INVALID_OP, op_bad),
        ):
            reason[bad] = _CODE[code]
        if not batch.nul_free:
            nul = np.zeros(n, dtype=bool)
            for column in FIELDS:
                if column != "country":
                    nul |= as_mask(pc.match_substring(fields[column], "\x00"))
            reason[nul] = _CODE[RejectReason.INVALID_TEXT]

        codes, shard, messages = self._countries(fields["country"], reason)
        columns = {
            "record": batch.records,
            "line": batch.lines,
            "id": ids,
            "country": codes,
            "name": name,
            "gender": genders,
            "age": ages,
            "address": trimmed["address"],
            "deleting": pa.array(deleting),
            **{f"raw_{column}": fields[column] for column in FIELDS},
        }
        return Checked(batch, pa.table(columns), reason, shard, messages)

    def _countries(
        self, raw: pa.Array, reason: np.ndarray
    ) -> tuple[pa.Array, np.ndarray, dict[int, str]]:
        """Each row's country code and shard, from the router, asked once per spelling in
        the batch; a row refused for its country gets that reason (it comes first)."""
        encoded = pc.dictionary_encode(raw, null_encoding="encode")
        spellings = encoded.dictionary.to_pylist()
        codes: list[str | None] = []
        shards = np.empty(len(spellings), dtype=np.int16)
        reasons = np.zeros(len(spellings), dtype=np.int8)
        for i, spelling in enumerate(spellings):
            destination = self.router.destination(spelling)
            if destination[0] is None:
                codes.append(None)
                shards[i] = -1
                reasons[i] = _CODE[destination[1]]
            else:
                codes.append(destination[0])
                shards[i] = self._shard_index[destination[1]]
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        row_reasons = reasons[indices]
        refused = row_reasons != 0
        reason[refused] = row_reasons[refused]
        messages: dict[int, str] = {}
        for row in np.flatnonzero(refused):
            messages[int(row)] = self.router.destination(spellings[indices[row]])[2]
        code_array = pa.array(codes, pa.string()).take(encoded.indices)
        return code_array, shards[indices], messages

    def _ages(self, age: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(the age, or null; whether it breaks the rule). "22", "+22", "22.0" are 22; at
        most AGE_DIGITS characters before the point, the sign included."""
        value = _whole_numbers(age, AGE_DIGITS, _signed_age)
        rules = self.rules
        in_range = pc.and_(
            pc.greater_equal(value, rules.age_min), pc.less_equal(value, rules.age_max)
        )
        bad = pc.and_(pc.is_valid(age), pc.invert(pc.fill_null(in_range, False)))
        return pc.cast(pc.if_else(bad, None, value), pa.int16(), safe=False), bad

    def _genders(self, gender: pa.Array) -> tuple[pa.Array, pa.Array]:
        """(the canonical gender, or null; whether it breaks the rule)."""
        found = pc.index_in(pc.utf8_lower(gender), value_set=self._gender_keys)
        canonical = self._gender_values.take(found)
        if not self.rules.genders:  # any value is accepted: unknown ones stay as written
            return pc.coalesce(canonical, gender), pa.array(np.zeros(len(gender), dtype=bool))
        bad = pc.and_(pc.is_valid(gender), pc.is_null(found))
        return canonical, bad


def _ops(op: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(which rows are delete markers; which have an op that is none of OPS), as masks."""
    if op is None or not n or not pc.max(pc.binary_length(op)).as_py():  # none given
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    op = pc.utf8_lower(_trimmed(op))
    deleting = as_mask(pc.equal(op, "delete"))
    known = as_mask(pc.equal(op, "upsert")) | deleting
    return deleting, as_mask(pc.is_valid(op)) & ~known


def _trimmed(column: pa.Array) -> pa.Array:
    """The field trimmed, with an empty one as null."""
    trimmed = pc.utf8_trim(column, characters=TRIM)
    return pc.if_else(pc.equal(pc.binary_length(trimmed), 0), None, trimmed)


def _ids(id_text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(the id, or null; whether it breaks the rule)."""
    value = _whole_numbers(id_text, ID_DIGITS, _signed_id)
    in_range = pc.and_(pc.greater_equal(value, 1), pc.less_equal(value, MAX_ID))
    bad = pc.and_(pc.is_valid(id_text), pc.invert(pc.fill_null(in_range, False)))
    return pc.if_else(bad, None, value), bad


def given_ids(texts: list[str]) -> np.ndarray:
    """The ids (int64) among id fields as text, trimmed and judged by the id rule; the
    fields that break it give none."""
    if not texts:
        return np.zeros(0, np.int64)
    ids, _ = _ids(_trimmed(pa.array(texts, pa.string())))
    return np.asarray(ids.drop_null().to_numpy(), dtype=np.int64)


def _whole_numbers(text: pa.Array, digits: int, others: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """Each field as int64: a field of 1 to `digits` ASCII digits (most of them) cast in
    bulk, any other by `others` (the value, or null), which sees only those. A regular
    expression over every field cost ten times as much."""
    plain = pc.fill_null(
        pc.and_(pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(text), digits)), False
    )
    rest = pc.and_(pc.is_valid(text), pc.invert(plain))
    if not rest.true_count:
        return pc.cast(text, pa.int64())
    value = pc.cast(pc.if_else(plain, text, None), pa.int64())
    return pc.replace_with_mask(value, rest, others(text.filter(rest)))


def _signed_age(age: pa.Array) -> pa.Array:
    """An age with a sign or a point ("+22", "22.0"), or null; at most AGE_DIGITS characters
    before the point, the sign included."""
    parts = pc.extract_regex(age, r"^(?P<sign>[+-]?)(?P<digits>[0-9]+)(?:\.0*)?$")
    sign, digits = pc.struct_field(parts, "sign"), pc.struct_field(parts, "digits")
    length = pc.add(pc.binary_length(sign), pc.binary_length(digits))
    usable = pc.fill_null(pc.less_equal(length, AGE_DIGITS), False)
    value = pc.cast(pc.if_else(usable, digits, None), pa.int64())
    return pc.if_else(pc.equal(sign, "-"), pc.negate(value), value)


def _signed_id(id_text: pa.Array) -> pa.Array:
    """An id with a leading `+` (at most ID_DIGITS digits), or null."""
    usable = pc.match_substring_regex(id_text, rf"^\+[0-9]{{1,{ID_DIGITS}}}$")
    return pc.cast(pc.if_else(usable, pc.utf8_ltrim(id_text, characters="+"), None), pa.int64())


def as_mask(condition: Any) -> np.ndarray:
    """A boolean array (null: false) as numpy."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)
