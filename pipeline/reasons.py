"""Why a record was not loaded: every reason code the rejects file can hold, with what it
means. The readers, the router and the shard's checks (sql/load/staging.sql) give
only these codes; tests/test_reasons.py holds them to it, and the README lists them all."""

from __future__ import annotations

from enum import Enum


class RejectReason(str, Enum):
    """A reason code; its value is what the rejects file says (a str, so JSON writes it)."""

    MALFORMED_RECORD = "malformed_record"
    TOO_LARGE = "too_large"
    INVALID_TEXT = "invalid_text"
    MISSING_COUNTRY = "missing_country"
    INVALID_COUNTRY = "invalid_country"
    UNROUTED_COUNTRY = "unrouted_country"
    MISSING_NAME = "missing_name"
    INVALID_ID = "invalid_id"
    INVALID_AGE = "invalid_age"
    INVALID_GENDER = "invalid_gender"
    DUPLICATE_ID = "duplicate_id"
    INVALID_OP = "invalid_op"
    FILE_REJECTED = "file_rejected"
    ERASED = "erased"
    RENUMBERED_ID = "renumbered_id"

    def __str__(self) -> str:
        return self.value

    @property
    def meaning(self) -> str:
        return MEANINGS[self]


MEANINGS = {
    RejectReason.MALFORMED_RECORD: "not a record: wrong field count, not JSON, not an object,"
    " a list where a value belongs, nested too deeply",
    RejectReason.TOO_LARGE: "a line, record or field over its limit (config/rules.yaml limits)",
    RejectReason.INVALID_TEXT: "text PostgreSQL cannot hold: a NUL character, a lone surrogate,"
    " a character the shard's database encoding lacks (pipeline.encodable)",
    RejectReason.MISSING_COUNTRY: "the record has no country (or only white space)",
    RejectReason.INVALID_COUNTRY: "a country that is no ISO 3166-1 code, name or alias",
    RejectReason.UNROUTED_COUNTRY: "a country no route names, with `default: reject`",
    RejectReason.MISSING_NAME: "the record has no name (or only white space)",
    RejectReason.INVALID_ID: "an id that is not a whole number from 1 to 999,999,999,999,999",
    RejectReason.INVALID_AGE: "an age that is not a whole number within the rules' range",
    RejectReason.INVALID_GENDER: "a gender the rules do not accept",
    RejectReason.DUPLICATE_ID: "the same id again later in the file for the same shard",
    RejectReason.INVALID_OP: "a delete-marker column (rules: op_column) value other than"
    " upsert, delete or empty",
    RejectReason.FILE_REJECTED: "the whole file failed (one entry for all its records)",
    RejectReason.ERASED: "a person `pipeline erase` removed: the erasure log keeps them out",
    RejectReason.RENUMBERED_ID: "an id of the record's country that `pipeline rebalance"
    " --on-id-conflict renumber` replaced on its shard: the id is another resident's there",
}


def unquoted_message(reason: RejectReason, searched: bool = True) -> str:
    """What the rejects file says of a record refused for `reason` that bears an erased
    person's name (pipeline.erased), or that was not `searched` for one (more records came
    before it than are searched): the reason, and none of the record's values."""
    if not searched:
        return (
            f"{MEANINGS[reason]}; too many refused records to search them all for erased"
            " persons' names, so no value is quoted"
        )
    return f"{MEANINGS[reason]}; it bears an erased person's name, so no value is quoted"
