"""Routing one record: which shard its country sends it to (or why none), and the file's
reject budget.

The country is normalised in Python (routing needs it before a row can go anywhere); the
rest of a record's rules run on the shard (sql/load/staging.sql), whose refusals
`describe_reject` puts into words for the rejects file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.config import ShardMap
from pipeline.reasons import RejectReason
from pipeline.rules import Rules

DESTINATIONS_CACHED = 10_000  # distinct raw country spellings remembered per file
# (code, shard name) for a routed row, or (None, reason, message) for a refused one.
Destination = tuple[Any, ...]


@dataclass(frozen=True)
class Budget:
    """How many rejects a file may have and still load: a count, or a percentage of its records."""

    limit: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> Budget:
        # ASCII digits (\d takes any script's); a count is whole, a percentage may not be.
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text, re.ASCII)
        if not match or ("." in match.group(1) and not match.group(2)):
            raise ValueError(f"{text!r} is not a count (25) or a percentage (10%)")
        if match.group(2) and float(match.group(1)) > 100:
            raise ValueError(f"{text!r}: a percentage is at most 100%")
        return cls(float(match.group(1)), bool(match.group(2)))

    def exceeded(self, rejected: int, read: int) -> bool:
        allowed = self.limit * read / 100 if self.percent else self.limit
        return rejected > allowed

    def __str__(self) -> str:
        return f"{self.limit:g}%" if self.percent else f"{self.limit:g}"


class Router:
    """The destination of each raw country value, computed once per distinct spelling (the
    load's loop runs once per record; `cache.get` is what it calls first)."""

    def __init__(self, shard_map: ShardMap, rules: Rules) -> None:
        self.shard_map = shard_map
        self.rules = rules
        self.cache: dict[Any, Destination] = {}

    def destination(self, raw_country: str | None) -> Destination:
        found = self.cache.get(raw_country)
        if found is None:
            found = self._route(raw_country)
            if len(self.cache) < DESTINATIONS_CACHED:
                self.cache[raw_country] = found
        return found

    def _route(self, raw_country: str | None) -> Destination:
        verdict = self.rules.country_of(raw_country)
        if verdict.code is None:
            return (None, verdict.reason or RejectReason.INVALID_COUNTRY, verdict.message or "")
        shard = self.shard_map.route_for(verdict.code)
        if shard is None:
            reason = RejectReason.UNROUTED_COUNTRY
            return (None, reason, f"no route for {verdict.code} (default: reject)")
        return (verdict.code, shard.name)


def describe_reject(reason: RejectReason, raw: dict[str, Any], rules: Rules, shard: str) -> str:
    """A readable message for a reason found by the SQL checks."""
    if reason == RejectReason.MISSING_NAME:
        return "name is missing"
    if reason == RejectReason.INVALID_ID:
        if not (raw.get("id") or "").strip():
            return "id is missing: a delete marker needs the id of the row to delete"
        return f"id {raw.get('id')!r} is not a whole number from 1 to 999999999999999"
    if reason == RejectReason.INVALID_OP:
        return (
            f"{rules.op_column} {raw.get('_op')!r} is not upsert, delete or empty (a delete marker)"
        )
    if reason == RejectReason.INVALID_AGE:
        return f"age {raw.get('age')!r} is not a whole number in {rules.age_min}..{rules.age_max}"
    if reason == RejectReason.INVALID_GENDER:
        return f"gender {raw.get('gender')!r} is not one of {rules.describe_genders()}"
    if reason == RejectReason.DUPLICATE_ID:
        return (
            # What the file holds, not an outcome: a file over its budget loads neither.
            f"id {raw.get('id')!r} comes again later in this file for shard {shard}:"
            " that later record supersedes this one"
        )
    if reason == RejectReason.ERASED:
        return (
            "this person was erased (pipeline erase); the erasure log keeps them out, and"
            " their record is not copied here"
        )
    return reason
