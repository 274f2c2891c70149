"""Passwords never reach output: DSN redaction and error scrubbing, whatever the DSN's spelling,
well formed or not, in every command that prints a DSN or a connection error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from pipeline.dsn import redact, scrub
from tests.conftest import closed_port, write_map


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
        # an unencoded @ or / in the password: everything up to the last @ is hidden
        ("postgresql://etl:cr/3t@x@127.0.0.1/db", "postgresql://etl:***@127.0.0.1/db"),
        ("postgresql://etl:p@ss@h/db", "postgresql://etl:***@h/db"),
        # a # is no fragment to libpq: it is the password's
        ("postgresql://etl:pa#ss@h/db", "postgresql://etl:***@h/db"),
        ("postgresql://etl:p%40ss@h/db", "postgresql://etl:***@h/db"),
        ("host=h password=a\\ b port=5", "host=h password=*** port=5"),
        ("host=h password = 'it\\'s' dbname=d", "host=h password = *** dbname=d"),
        ("dbname='postgresql://u:zz@h/d'", "dbname='postgresql://u:***@h/d'"),
        ("postgresql://u:pw@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
    ],
)
def test_redact_hides_the_password(dsn: str, expected: str) -> None:
    assert redact(dsn) == expected


def test_scrub_removes_a_quoted_password_and_joins_lines() -> None:
    text = 'connection failed: bad thing "s3cret"\n\tIs the server running?'
    assert (
        scrub(text, "host=db password=s3cret")
        == 'connection failed: bad thing "***"; Is the server running?'
    )


def test_scrub_hides_the_pieces_libpq_misreads_from_a_malformed_uri() -> None:
    # libpq reads host "ss@h" from this URI, and quotes it in its error
    text = 'could not translate host name "ss@h" to address'
    assert (
        scrub(text, "postgresql://etl:p@ss@h/db")
        == 'could not translate host name "***" to address'
    )
    # the rest of the text is kept: only the pieces of the password go
    assert scrub(text, "postgresql://etl:pw@h/db") == text


# Every password below is distinctive in each of its 4-character windows, so that a test can
# look for any piece of it in the output, not only the whole.
SPELLINGS = [
    # (DSN with {port} and {port2}: closed ports, password)
    ("postgresql://etl:Zq9Xw7@127.0.0.1:{port}/db", "Zq9Xw7"),
    ("postgres://etl@127.0.0.1:{port}/db", None),
    ("postgresql://127.0.0.1:{port}/db?user=etl&password=Zq9Xw7", "Zq9Xw7"),
    ("postgresql://etl:Zq9Xw7@127.0.0.1:{port},127.0.0.1:{port2}/db", "Zq9Xw7"),
    ("postgresql://etl:Zq/9@kW@127.0.0.1:{port}/db", "Zq/9@kW"),
    ("postgresql://etl:Zq@9@kW@127.0.0.1:{port}/db", "Zq@9@kW"),
    ("postgresql://etl:Zq%2F9%40kW@127.0.0.1:{port}/db", "Zq/9@kW"),
    ("postgresql://etl:Zq#9?kW&x@127.0.0.1:{port}/db", "Zq#9?kW&x"),
    ("postgresql://etl:Zq9Xw7@127.0.0.1:{port}/db?connect_timeout=3&application_name=t", "Zq9Xw7"),
    ("host=127.0.0.1 port={port} user=etl password=Zq9Xw7 dbname=db", "Zq9Xw7"),
    ("host=127.0.0.1 port={port} password='Zq 9 kW spaced' dbname=db", "Zq 9 kW spaced"),
    ("host=127.0.0.1 port={port} password='Zq\\'9\\\\kW' dbname=db", "Zq'9\\kW"),
    ("host=127.0.0.1 port={port} password=Zq/9@kW dbname=db", "Zq/9@kW"),
    ("  host = 127.0.0.1   port = {port}   password = Zq9Xw7  ", "Zq9Xw7"),
    ("host=127.0.0.1,127.0.0.1 port={port},{port2} password=Zq9Xw7", "Zq9Xw7"),
    ("host=127.0.0.1 port={port} password=Zq\\ 9kW", "Zq 9kW"),
    ("dbname='postgresql://etl:Zq9Xw7@127.0.0.1:{port}/db'", "Zq9Xw7"),
    # from the environment into a URI, unencoded: the case the issue found
    ("postgresql://etl:${{PIPELINE_TEST_PW}}@127.0.0.1:{port}/db", "cr/3t@x"),
    ("postgresql://etl:${{PIPELINE_TEST_PW}}@127.0.0.1:{port}/db", "Zq#9 kW"),
]


def _pieces(password: str) -> set[str]:
    """The password and every 4-character window of it."""
    return {password} | {password[i : i + 4] for i in range(len(password) - 3)}


def test_no_piece_of_a_password_reaches_any_output(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "people.csv"
    data.write_text("id,country,name,gender,age,address\n1,US,Ann,female,30,Main St\n")
    port, port2 = closed_port(), closed_port()
    commands = [
        ["status"],
        ["status", "--json"],
        ["init"],
        ["init", "--roles"],
        ["load", str(data)],
        ["check"],
        ["check", "--format", "json"],
        ["extract"],
        ["report"],
    ]
    ran = 0
    for i, (template, password) in enumerate(SPELLINGS):
        if password is not None and "PIPELINE_TEST_PW" in template:
            monkeypatch.setenv("PIPELINE_TEST_PW", password)
        dsn = template.format(port=port, port2=port2)
        config = write_map(
            tmp_path / f"map{i}", f"shards:\n  only:\n    dsn: {dsn!r}\ndefault: only\n"
        )
        for args in commands:
            result = run_cli(*args, config=config)
            ran += 1
            where = f"{dsn} {args}: {result.output}"
            assert result.exit_code in (1, 2), where
            assert "Traceback" not in result.output, where
            assert "only" in result.output, where  # the shard is named: the error is explained
            for piece in _pieces(password) if password else ():
                assert piece not in result.output, where
    assert ran == len(SPELLINGS) * len(commands)
