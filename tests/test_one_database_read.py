"""Two shards of the map that are one database under two spellings: the commands that read
would count each of its residents twice, once for each shard; they refuse (exit 2) before
any row goes out, as the commands that write do (tests/test_schema.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from pipeline import to_dataframe
from pipeline.errors import ConfigError
from tests.test_schema import one_database_twice  # noqa: F401  # a fixture, used by name

REFUSAL = "shards.db_us.dsn: the same database as shard default"


@pytest.fixture
def loaded_default(run_cli: Callable[..., Result], tmp_path: Path) -> None:
    """The real two shards with a resident on each (default holds Bo)."""
    assert run_cli("init").exit_code == 0
    (tmp_path / "people.csv").write_text("id,country,name\n1,US,Ann\n2,DE,Bo\n")
    assert run_cli("load", str(tmp_path / "people.csv")).exit_code == 0


@pytest.mark.parametrize(
    "command",
    [
        ["extract"],
        ["extract", "--format", "ndjson"],
        ["extract", "-o", "out.csv"],
        ["extract", "-o", "out.parquet"],
        ["report"],
        ["report", "--format", "json"],
        ["plan"],
    ],
)
def test_a_read_of_one_database_twice_is_refused_before_any_row(
    run_cli: Callable[..., Result],
    loaded_default: None,
    one_database_twice: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(*command, config=one_database_twice)
    assert result.exit_code == 2, result.output
    assert REFUSAL in result.output and "Traceback" not in result.output
    assert "Bo" not in result.stdout  # no row of the shard, under either name
    assert not list(tmp_path.glob("out.*"))  # no file, not even a partial one


def test_to_dataframe_of_one_database_twice_raises(
    loaded_default: None,
    one_database_twice: Path,  # noqa: F811
) -> None:
    with pytest.raises(ConfigError, match=REFUSAL):
        to_dataframe(config=one_database_twice)


def test_one_shard_of_the_two_reads_as_usual(
    run_cli: Callable[..., Result],
    loaded_default: None,
    one_database_twice: Path,  # noqa: F811
) -> None:
    """Reading only one of them counts nobody twice: nothing to refuse."""
    result = run_cli("extract", "--shard", "default", config=one_database_twice)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["default,2,DE,Bo,,,"]
