"""Passwords never reach output: DSN redaction and error scrubbing."""

from __future__ import annotations

import pytest

from pipeline.dsn import redact, scrub


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (
            "postgresql://app:s3cret@db.example.org:5432/res",
            "postgresql://app:***@db.example.org:5432/res",
        ),
        ("postgres://app@db/res", "postgres://app@db/res"),
        (
            "postgresql://db/res?user=app&password=s3cret",
            "postgresql://db/res?user=app&password=***",
        ),
        ("host=db user=app password=s3cret dbname=res", "host=db user=app password=*** dbname=res"),
        ("host=db password='s3 cret'", "host=db password=***"),
        ("host=db dbname=res", "host=db dbname=res"),
    ],
)
def test_redact_hides_the_password(dsn: str, expected: str) -> None:
    assert redact(dsn) == expected
    assert "s3" not in redact(dsn).replace("s3cret", "")  # nothing of it survives


def test_scrub_removes_a_quoted_password_and_joins_lines() -> None:
    text = 'connection failed: bad thing "s3cret"\n\tIs the server running?'
    assert (
        scrub(text, "host=db password=s3cret")
        == 'connection failed: bad thing "***"; Is the server running?'
    )
