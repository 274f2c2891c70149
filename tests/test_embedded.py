"""The embedded default: `embedded:NAME` shards work on a bare machine, and can be stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import embedded
from pipeline.cli import cli


@pytest.fixture
def embedded_map(tmp_path: Path) -> Iterator[Path]:
    """The shipped shard map, with the embedded server's data in a temporary folder."""
    shipped = (Path(__file__).resolve().parent.parent / "config" / "shards.yaml").read_text()
    path = tmp_path / "shards.yaml"
    path.write_text(shipped + f"embedded:\n  data_dir: {tmp_path / 'pgdata'}\n")
    yield path
    embedded.stop(tmp_path / "pgdata")


@pytest.mark.slow
def test_embedded_shards_start_on_demand_and_stop(embedded_map: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DB1_DSN": "", "DB2_DSN": ""}  # the shipped fallbacks, whatever the caller's shell says
    result = runner.invoke(cli, ["--config", str(embedded_map), "init"], env=env)
    assert result.exit_code == 0, result.output
    assert embedded.is_running(tmp_path / "pgdata")

    status = runner.invoke(cli, ["--config", str(embedded_map), "status", "--json"], env=env)
    data = json.loads(status.stdout)
    assert [(d["shard"], d["dsn"], d["schema_version"]) for d in data] == [
        ("default", "embedded:default", 3),
        ("db_us", "embedded:db_us", 3),
    ]

    stopped = runner.invoke(cli, ["--config", str(embedded_map), "embedded", "stop"], env=env)
    assert stopped.exit_code == 0 and "stopped embedded PostgreSQL" in stopped.output
    assert not embedded.is_running(tmp_path / "pgdata")

    # the data outlives the server: the next command starts it again and finds the schema
    again = runner.invoke(cli, ["--config", str(embedded_map), "status"], env=env)
    assert again.exit_code == 0
    assert again.output.count("schema 3/3") == 2
