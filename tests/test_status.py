"""`pipeline status`: one line per shard, JSON for scripts, exit 1 when a shard is down."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from pipeline.schema import latest_version
from tests.conftest import closed_port, shard_map_yaml, write_map

LATEST = latest_version()  # the schema version `pipeline init` brings shards to


def test_status_before_init_says_to_run_init(run_cli: Callable[..., Result]) -> None:
    result = run_cli("status")
    assert result.exit_code == 0
    assert f"schema 0/{LATEST} (run `pipeline init`)" in result.output


def test_status_shows_each_shard(run_cli: Callable[..., Result], initialised: None) -> None:
    result = run_cli("status")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["default", "db_us"]
    assert all(
        f"reachable  schema {LATEST}/{LATEST}  0 residents  no loads yet" in line for line in lines
    )


def test_status_json(run_cli: Callable[..., Result], initialised: None) -> None:
    result = run_cli("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [d["shard"] for d in data] == ["default", "db_us"]
    assert all(
        d["reachable"] and d["schema_version"] == d["latest_version"] == LATEST for d in data
    )
    assert all(d["residents"] == 0 and d["last_load_at"] is None for d in data)


def test_unreachable_shard_exits_1_and_hides_the_password(
    run_cli: Callable[..., Result], shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    dsns = dict(shard_dsns)
    dsns["db_us"] = (
        f"postgresql://app:Sup3rS3cret@127.0.0.1:{closed_port()}/residents?connect_timeout=3"
    )
    path = tmp_path / "down.yaml"
    path.write_text(shard_map_yaml(dsns))
    for args in (["status"], ["status", "--json"], ["init"]):
        result = run_cli(*args, config=path)
        assert result.exit_code == 1, result.output
        assert "Sup3rS3cret" not in result.output
        assert "Traceback" not in result.output
    text = run_cli("status", config=path).output
    assert "db_us  postgresql://app:***@127.0.0.1" in text
    assert "unreachable: " in text
    data = json.loads(run_cli("status", "--json", config=path).stdout)
    assert data[1]["reachable"] is False and data[0]["reachable"] is True


def test_shards_that_do_not_answer_cost_one_time_out_not_one_each(
    run_cli: Callable[..., Result], tmp_path: Path
) -> None:
    # A server that takes the connection and never says a word: libpq waits for its
    # connect_timeout. Asked one after the other, two such shards would cost two of them.
    timeout = 2
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        dsns = {
            name: f"host=127.0.0.1 port={port} dbname={name} user=x connect_timeout={timeout}"
            for name in ("default", "db_us")
        }
        config = write_map(tmp_path / "silent", shard_map_yaml(dsns))
        began = time.monotonic()
        result = run_cli("status", config=config)
        took = time.monotonic() - began
    assert result.exit_code == 1
    assert result.output.count("unreachable") == 2
    assert took < 2 * timeout
