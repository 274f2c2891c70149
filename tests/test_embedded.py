"""The embedded default: `embedded:NAME` shards work on a bare machine, and can be stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import embedded
from pipeline.cli import cli
from pipeline.config import load_shard_map, project_root
from pipeline.schema import latest_version

LATEST = latest_version()  # the schema version `pipeline init` brings shards to


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
        ("default", "embedded:default", LATEST),
        ("db_us", "embedded:db_us", LATEST),
    ]

    stopped = runner.invoke(cli, ["--config", str(embedded_map), "embedded", "stop"], env=env)
    assert stopped.exit_code == 0 and "stopped embedded PostgreSQL" in stopped.output
    assert not embedded.is_running(tmp_path / "pgdata")

    # the data outlives the server: the next command starts it again and finds the schema
    again = runner.invoke(cli, ["--config", str(embedded_map), "status"], env=env)
    assert again.exit_code == 0
    assert again.output.count(f"schema {LATEST}/{LATEST}") == 2


@pytest.mark.slow
def test_embedded_psql_opens_the_wheels_psql_on_a_shards_database(
    embedded_map: Path, tmp_path: Path
) -> None:
    # Through a process of its own: the command replaces its process with psql.
    env = dict(os.environ, DB1_DSN="", DB2_DSN="", PYTHONWARNINGS="ignore")
    base = [sys.executable, "-m", "pipeline.cli", "--config", str(embedded_map)]
    subprocess.run([*base, "init"], env=env, check=True, capture_output=True)
    sql = "SELECT current_database(), count(*) FROM residents"
    done = subprocess.run(
        [*base, "embedded", "psql", "db_us", "-At", "-c", sql],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "db_us|0\n"), done.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(
        embedded_map.read_text().replace("${DB2_DSN:-embedded:db_us}", "host=/nowhere")
    )
    result = CliRunner().invoke(cli, ["--config", str(plain), "embedded", "psql", "db_us"], env={})
    assert result.exit_code == 2 and "shard db_us is not embedded" in result.output


@pytest.mark.parametrize(
    ("map_path", "root"),
    [
        ("config/shards.yaml", "."),
        ("/srv/project/config/shards.yaml", "/srv/project"),
        ("/etc/pipeline/shards.yaml", "/etc/pipeline"),
        ("maps/shards.yaml", "maps"),
    ],
)
def test_the_project_root_is_the_maps_folder_or_the_one_above_config(
    map_path: str, root: str
) -> None:
    assert project_root(Path(map_path)) == Path(root)


def test_a_map_given_from_inside_config_finds_the_root_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    monkeypatch.chdir(tmp_path / "config")
    assert project_root(Path("shards.yaml")) == tmp_path


def _project(folder: Path) -> Path:
    """A project folder with the shipped shard map (embedded shards, default data_dir)."""
    shipped = Path(__file__).resolve().parent.parent / "config"
    (folder / "config").mkdir(parents=True)
    for name in ("shards.yaml", "rules.yaml", "checks.yaml"):
        (folder / "config" / name).write_text((shipped / name).read_text())
    return folder


def test_the_default_data_dir_is_under_the_project_root_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(project)
    here = load_shard_map("config/shards.yaml", environ={}).embedded_dir
    assert here == Path(".pipeline/postgres")
    monkeypatch.chdir(elsewhere)
    there = load_shard_map("../project/config/shards.yaml", environ={}).embedded_dir
    assert there.resolve() == project / ".pipeline" / "postgres"


def test_data_left_where_the_old_rule_put_it_is_named_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a relative data_dir was read from the working directory.
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "shards.yaml").write_text(
        "shards:\n  a: {dsn: 'embedded:a'}\ndefault: a\nembedded:\n  data_dir: pgdata\n"
    )
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("18\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--config", "maps/shards.yaml", "status"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: maps/shards.yaml: embedded.data_dir: ")
    assert f"data is in {tmp_path / 'pgdata'}" in result.output
    assert not (maps / "pgdata").exists()  # no second, empty server was started


@pytest.mark.slow
def test_config_from_another_folder_uses_the_same_embedded_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = _project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"DB1_DSN": "", "DB2_DSN": ""}
    try:
        monkeypatch.chdir(project)
        assert CliRunner().invoke(cli, ["init"], env=env).exit_code == 0
        monkeypatch.chdir(elsewhere)
        status = CliRunner().invoke(
            cli, ["--config", "../project/config/shards.yaml", "status"], env=env
        )
        assert status.exit_code == 0, status.output
        assert (
            status.output.count(f"schema {LATEST}/{LATEST}") == 2
        )  # the server init set up, not a new one
        assert not (elsewhere / ".pipeline").exists()
    finally:
        embedded.stop(project / ".pipeline" / "postgres")
