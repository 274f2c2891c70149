"""The rules and the routing of one record, without a database: a country's normalisation
(`pipeline.rules`), its shard or its reject (`pipeline.routing.Router`), the reject budget
(`Budget`) and the rejects' messages. What the shards check (ids, ages, genders) is tested
through a load in test_load.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_shard_map
from pipeline.errors import ConfigError
from pipeline.reasons import RejectReason
from pipeline.routing import DESTINATIONS_CACHED, Budget, Router, describe_reject
from pipeline.rules import COUNTRY_MAX, Rules, parse_rules
from tests.conftest import PROJECT

RULES_FILE = PROJECT / "config" / "rules.yaml"


def shipped(**changes: object) -> Rules:
    """The shipped rules.yaml, with sections replaced by `changes`."""
    doc = yaml.safe_load(RULES_FILE.read_text()) | changes
    return parse_rules(RULES_FILE, doc)


# -- countries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("US", "US"),
        (" us\t", "US"),
        ("u.s.a.", "US"),  # an alias, matched case-insensitively
        ("United States of America", "US"),
        ("England", "GB"),
        ("Germany", "DE"),  # a name pycountry knows
        ("deu", "DE"),  # an alpha-3 code
        ("\u00a0Federal Republic of Germany\u3000", "DE"),  # an official name, trimmed
    ],
)
def test_a_country_is_trimmed_aliased_and_looked_up(raw: str, code: str) -> None:
    assert shipped().country_of(raw).code == code


@pytest.mark.parametrize(
    ("raw", "reason", "message"),
    [
        (None, "missing_country", "country is missing"),
        (" \t\u00a0", "missing_country", "country is missing"),
        ("ZZ", "invalid_country", "'ZZ' is not an ISO 3166-1 country"),
        ("Atlantis", "invalid_country", "'Atlantis' is not an ISO 3166-1 country"),
        (49, "invalid_country", "country 49 is not text"),
        (
            "x" * (COUNTRY_MAX + 1),
            "invalid_country",
            f"country is {COUNTRY_MAX + 1} characters long: no country is",
        ),
    ],
)
def test_a_country_that_names_none_says_why(raw: object, reason: str, message: str) -> None:
    verdict = shipped().country_of(raw)
    assert (verdict.code, verdict.reason, verdict.message) == (None, reason, message)


def test_names_are_looked_up_only_when_the_rules_say_so() -> None:
    rules = shipped(country={"aliases": {"Deutschland": "de"}, "lookup_names": False})
    assert rules.country_of("deutschland").code == "DE"
    assert rules.country_of("de").code == "DE"
    assert rules.country_of("Germany").reason == "invalid_country"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"country": {"aliases": {"Narnia": "NA1"}}}, "country.aliases.Narnia: 'NA1' is not"),
        ({"country": {"aliases": {"x" * 101: "DE"}}}, "longer than 100 characters"),
        ({"country": {"lookup_names": "yes"}}, "country.lookup_names: expected true or false"),
        ({"gender": {"accepted": "Male"}}, "gender.accepted: expected a list of values"),
        (
            {"gender": {"accepted": ["Male"], "aliases": {"F": "Female"}}},
            "gender.aliases.F: 'Female' is not in gender.accepted",
        ),
        (
            {"country": {"aliases": {"usa": "DE", " USA": "GB"}}},
            "country.aliases. USA: USA is an alias of two countries",
        ),
        (
            {"gender": {"accepted": ["Male", "Female"], "aliases": {"f": "Male", "F": "Female"}}},
            "gender.aliases.F: 'f' is an alias of two genders",
        ),
        ({"age": {"min": 10, "max": 5}}, "age: need 0 <= min <= max <= 150"),
        ({"age": {"max": 151}}, "age: need 0 <= min <= max <= 150"),
        ({"colour": {}}, "colour: unknown key"),
    ],
)
def test_bad_rules_are_a_configuration_error_naming_the_file_and_key(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        shipped(**changes)
    assert str(caught.value).startswith(f"{RULES_FILE}: ")
    assert message in str(caught.value)


def test_gender_aliases_map_to_the_accepted_spelling() -> None:
    rules = shipped(gender={"accepted": ["Male", "Female"], "aliases": {"W": "female"}})
    assert rules.genders == ("Male", "Female")
    assert rules.gender_aliases == {"w": "Female"}
    assert rules.describe_genders() == "Male, Female"
    assert shipped(gender={"accepted": []}).describe_genders() == "any value"


# -- routing ------------------------------------------------------------------------------


def router(tmp_path: Path, default: str = "default") -> Router:
    path = tmp_path / "shards.yaml"
    path.write_text(
        "shards:\n  default: {dsn: 'host=a'}\n  db_us: {dsn: 'host=b'}\n"
        f"routes:\n  db_us: [US]\ndefault: {default}\n"
    )
    return Router(load_shard_map(path, environ={}), shipped())


def test_a_record_goes_to_its_countrys_shard_or_the_default(tmp_path: Path) -> None:
    route = router(tmp_path)
    assert route.destination(" usa ") == ("US", "db_us")
    assert route.destination("Germany") == ("DE", "default")
    assert route.destination("ZZ") == (
        None,
        "invalid_country",
        "'ZZ' is not an ISO 3166-1 country",
    )
    assert route.destination(None) == (None, "missing_country", "country is missing")


def test_without_a_default_an_unrouted_country_is_rejected(tmp_path: Path) -> None:
    route = router(tmp_path, default="reject")
    assert route.destination("us") == ("US", "db_us")
    assert route.destination("FR") == (
        None,
        "unrouted_country",
        "no route for FR (default: reject)",
    )


def test_routing_remembers_a_bounded_number_of_spellings(tmp_path: Path) -> None:
    route = router(tmp_path)
    for i in range(DESTINATIONS_CACHED + 50):
        assert route.destination(f"nowhere {i}")[1] == "invalid_country"
    assert len(route.cache) == DESTINATIONS_CACHED
    assert route.destination("nowhere 0") == route.cache["nowhere 0"]


@pytest.mark.parametrize(
    ("reason", "raw", "message"),
    [
        ("missing_name", {}, "name is missing"),
        ("invalid_id", {"id": "x9"}, "id 'x9' is not a whole number from 1 to 999999999999999"),
        ("invalid_age", {"age": "200"}, "age '200' is not a whole number in 0..150"),
        (
            "invalid_gender",
            {"gender": "Robot"},
            "gender 'Robot' is not one of Male, Female, Other",
        ),
        (
            "duplicate_id",
            {"id": "13"},
            "id '13' comes again later in this file for shard db_us:"
            " that later record supersedes this one",
        ),
    ],
)
def test_each_reject_of_the_shards_checks_is_put_into_words(
    reason: str, raw: dict[str, str], message: str
) -> None:
    assert describe_reject(RejectReason(reason), raw, shipped(), "db_us") == message


# -- the reject budget --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "percent", "shown"),
    [
        ("0", 0, False, "0"),
        ("25", 25, False, "25"),
        (" 2.5 % ", 2.5, True, "2.5%"),
        ("100%", 100, True, "100%"),
    ],
)
def test_a_budget_is_a_count_or_a_percentage(
    text: str, limit: float, percent: bool, shown: str
) -> None:
    budget = Budget.parse(text)
    assert (budget.limit, budget.percent, str(budget)) == (limit, percent, shown)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", "'lots' is not a count (25) or a percentage (10%)"),
        ("-1", "'-1' is not a count (25) or a percentage (10%)"),
        ("10%%", "'10%%' is not a count (25) or a percentage (10%)"),
        ("", "'' is not a count (25) or a percentage (10%)"),
        ("1.5", "'1.5' is not a count (25) or a percentage (10%)"),  # a count is whole
        ("\u0662", "'\u0662' is not a count (25) or a percentage (10%)"),  # Arabic-Indic 2
        ("\uff12%", "'\uff12%' is not a count (25) or a percentage (10%)"),  # fullwidth 2
        ("150%", "'150%': a percentage is at most 100%"),
    ],
)
def test_a_bad_budget_says_what_a_good_one_is(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        Budget.parse(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "rejected", "read", "exceeded"),
    [
        ("0", 0, 10, False),
        ("0", 1, 10, True),
        ("2", 2, 10, False),  # at the limit is within it
        ("2", 3, 10, True),
        ("10%", 1, 10, False),
        ("10%", 2, 10, True),
        ("10%", 1, 9, True),  # 10% of 9 is 0.9
        ("50%", 0, 0, False),  # an empty file is never over
        ("100%", 10, 10, False),
    ],
)
def test_a_budget_is_exceeded_past_its_limit_not_at_it(
    text: str, rejected: int, read: int, exceeded: bool
) -> None:
    assert Budget.parse(text).exceeded(rejected, read) is exceeded
