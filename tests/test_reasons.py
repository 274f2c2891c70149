"""Every reason code a rejects file can hold is a RejectReason, with a meaning, in the README."""

from __future__ import annotations

import re

import pytest

from pipeline.queries import LOAD
from pipeline.reasons import RejectReason
from tests.conftest import PROJECT

README = (PROJECT / "README.md").read_text(encoding="utf-8")


def sql_reasons() -> set[str]:
    """The codes the shard's checks give: the `THEN '...'` of the `reason` CASE."""
    text = LOAD.staging.as_string(None)
    case = text[text.index("CASE WHEN r.superseded") : text.index("END AS reason")]
    return set(re.findall(r"THEN '([a-z_]+)'", case))


def test_the_sql_gives_only_reject_reasons() -> None:
    found = sql_reasons()
    assert found  # the CASE was found and read
    assert found <= {r.value for r in RejectReason}


@pytest.mark.parametrize("reason", list(RejectReason), ids=str)
def test_every_reason_has_a_meaning_and_is_in_the_readme(reason: RejectReason) -> None:
    assert len(reason.meaning) > 10
    assert f"`{reason.value}`" in README
    assert str(reason) == reason.value  # what the rejects file and messages print
