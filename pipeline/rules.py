"""The validation and normalisation rules (`config/rules.yaml`), as typed objects.

They are applied to whole columns of records by pipeline.validate; the country through
`Rules.country_of`, asked once per distinct raw value (pipeline.routing caches it).

It also holds what every reader of incoming files shares, so that a reader written later
(a bulk one) applies the same: the `Limits` on what one record may hold (the `limits:`
section), and `TRIM`, the characters trimmed from both ends of every field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pycountry

from pipeline.errors import ConfigError
from pipeline.reasons import RejectReason

SCHEMA_MIN_AGE, SCHEMA_MAX_AGE = 0, 150  # the residents_age_range CHECK in sql/migrations

# Trimmed from both ends of every field (and of column names):
# Unicode's White_Space, and the invisible characters that files carry at the ends of text
# (zero width space, word joiner, byte-order mark, Mongolian vowel separator). A field that
# is nothing but these is missing.
ASCII_TRIM = " \t\n\r\f\v"
UNICODE_TRIM = (
    "\u0085\u00a0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u200b\u2028\u2029\u202f\u205f\u2060\u3000\ufeff"
)
TRIM = ASCII_TRIM + UNICODE_TRIM
# No country name or alias is longer (ISO 3166's longest name has 56 characters): a longer
# value is refused before it is looked up or remembered.
COUNTRY_MAX = 100


@dataclass(frozen=True)
class Limits:
    """What one record of an incoming file may hold, in characters (after decoding). A
    breach is that record's reject (`too_large`, or `malformed_record` for nesting); memory
    stays bounded by these, whatever the file holds."""

    max_line: int = 1 << 20  # one line of a CSV or NDJSON file
    max_record: int = 1 << 20  # one record: a CSV record over several lines, a JSON object
    max_field: int = 1 << 16  # one of the six fields
    max_depth: int = 16  # JSON nesting inside one record (a record needs 1)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class CountryVerdict:
    """The country a raw value names, or why it names none."""

    code: str | None
    reason: RejectReason | None = None  # missing_country | invalid_country
    message: str | None = None


@dataclass
class Rules:
    path: Path
    country_aliases: Mapping[str, str]  # upper-cased alias -> alpha-2
    lookup_names: bool
    gender_aliases: Mapping[str, str]  # casefolded alias -> canonical value
    genders: tuple[str, ...]  # canonical accepted values; empty: any value
    age_min: int
    age_max: int
    limits: Limits = DEFAULT_LIMITS
    op_column: str = "_op"  # a change file's delete markers (pipeline.validate)

    def country_of(self, raw: object) -> CountryVerdict:
        """Normalise a raw country value: trim, upper-case, aliases, then ISO 3166-1.
        (Not cheap: the loader asks once per distinct spelling.)"""
        if raw is None or (isinstance(raw, str) and not raw.strip(TRIM)):
            return CountryVerdict(None, RejectReason.MISSING_COUNTRY, "country is missing")
        if not isinstance(raw, str):
            return CountryVerdict(
                None, RejectReason.INVALID_COUNTRY, f"country {raw!r} is not text"
            )
        text = raw.strip(TRIM)
        if len(text) > COUNTRY_MAX:
            return CountryVerdict(
                None,
                RejectReason.INVALID_COUNTRY,
                f"country is {len(text)} characters long: no country is",
            )
        upper = text.upper()
        code = self.country_aliases.get(upper, upper)
        if len(code) == 2 and pycountry.countries.get(alpha_2=code) is not None:
            return CountryVerdict(code)
        if self.lookup_names:
            try:
                return CountryVerdict(str(pycountry.countries.lookup(text).alpha_2))
            except LookupError:
                pass
        return CountryVerdict(
            None, RejectReason.INVALID_COUNTRY, f"{text!r} is not an ISO 3166-1 country"
        )

    def describe_genders(self) -> str:
        return ", ".join(self.genders) if self.genders else "any value"


def parse_rules(path: Path, doc: Any) -> Rules:
    """Rules from a parsed YAML document; ConfigError naming the file and key."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with keys country, gender, age and limits")
    _only(doc, {"country", "gender", "age", "limits", "op_column"}, "", fail)
    country = _section(doc, "country", {"aliases", "lookup_names"}, fail)
    gender = _section(doc, "gender", {"aliases", "accepted"}, fail)
    age = _section(doc, "age", {"min", "max"}, fail)
    limits = _section(doc, "limits", {f.name for f in fields(Limits)}, fail)

    country_aliases: dict[str, str] = {}
    for alias, code in _mapping(country.get("aliases"), "country.aliases", fail).items():
        target = str(code).upper()
        if pycountry.countries.get(alpha_2=target) is None:
            raise fail(f"country.aliases.{alias}", f"{code!r} is not an ISO 3166-1 alpha-2 code")
        if len(str(alias).strip(TRIM)) > COUNTRY_MAX:
            raise fail(f"country.aliases.{alias}", f"longer than {COUNTRY_MAX} characters")
        key = str(alias).strip(TRIM).upper()
        if country_aliases.get(key, target) != target:  # one would win, unsaid
            raise fail(f"country.aliases.{alias}", f"{key} is an alias of two countries")
        country_aliases[key] = target
    lookup = country.get("lookup_names", True)
    if not isinstance(lookup, bool):
        raise fail("country.lookup_names", "expected true or false")

    accepted = gender.get("accepted") or []
    if not isinstance(accepted, list) or not all(
        isinstance(g, str) and g.strip() for g in accepted
    ):
        raise fail("gender.accepted", "expected a list of values, e.g. [Male, Female]")
    genders = tuple(g.strip() for g in accepted)
    by_fold = {g.casefold(): g for g in genders}
    gender_aliases: dict[str, str] = {}
    for alias, value in _mapping(gender.get("aliases"), "gender.aliases", fail).items():
        target = str(value).strip()
        if genders and target.casefold() not in by_fold:
            raise fail(f"gender.aliases.{alias}", f"{value!r} is not in gender.accepted")
        key, canonical = str(alias).strip().casefold(), by_fold.get(target.casefold(), target)
        if gender_aliases.get(key, canonical) != canonical:  # one would win, unsaid
            raise fail(f"gender.aliases.{alias}", f"{key!r} is an alias of two genders")
        gender_aliases[key] = canonical

    age_min = _int(age.get("min", SCHEMA_MIN_AGE), "age.min", fail)
    age_max = _int(age.get("max", SCHEMA_MAX_AGE), "age.max", fail)
    if not SCHEMA_MIN_AGE <= age_min <= age_max <= SCHEMA_MAX_AGE:
        raise fail("age", f"need {SCHEMA_MIN_AGE} <= min <= max <= {SCHEMA_MAX_AGE} (the schema's)")
    return Rules(
        path=path,
        country_aliases=country_aliases,
        lookup_names=lookup,
        gender_aliases=gender_aliases,
        genders=genders,
        age_min=age_min,
        age_max=age_max,
        limits=_limits(limits, fail),
        op_column=_op_column(doc.get("op_column", "_op"), fail),
    )


def _op_column(value: Any, fail: Any) -> str:
    """The delete-marker column's name, as the readers match column names: trimmed, lower."""
    if not isinstance(value, str) or not value.strip(TRIM):
        raise fail("op_column", "expected a column name, such as _op")
    name = value.strip(TRIM).lower()
    if name in ("id", "country", "name", "gender", "age", "address"):
        raise fail("op_column", f"{name!r} is a resident column")
    return name


def _limits(section: dict[str, Any], fail: Any) -> Limits:
    values = {}
    for name, value in section.items():
        number = _int(value, f"limits.{name}", fail)
        if number < 1:
            raise fail(f"limits.{name}", "expected a positive integer")
        values[name] = number
    limits = Limits(**values)
    if limits.max_field > limits.max_record:
        raise fail("limits.max_field", "cannot be larger than limits.max_record")
    return limits


def _only(section: Mapping[Any, Any], allowed: set[str], prefix: str, fail: Any) -> None:
    extra = sorted(set(map(str, section)) - allowed)
    if extra:
        raise fail(prefix + extra[0], f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _section(doc: Mapping[str, Any], name: str, allowed: set[str], fail: Any) -> dict[str, Any]:
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise fail(name, "expected a mapping")
    _only(value, allowed, f"{name}.", fail)
    return value


def _mapping(value: Any, key: str, fail: Any) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(key, "expected a mapping of alias: value")
    return value


def _int(value: Any, key: str, fail: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(key, "expected an integer")
    return value
