"""The shard map: parsing, ${VAR} expansion, routing, and one clear error per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_shard_map
from pipeline.errors import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "shards.yaml"


def test_shipped_map_reproduces_the_original_app() -> None:
    shard_map = load_shard_map(SHIPPED, environ={})
    assert [s.name for s in shard_map.shards] == ["default", "db_us"]
    assert shard_map.shard("default").dsn == "embedded:default"
    assert shard_map.shard("db_us").dsn == "embedded:db_us"
    assert shard_map.route_for("US").name == "db_us"  # type: ignore[union-attr]
    assert shard_map.route_for("DE").name == "default"  # type: ignore[union-attr]


def test_environment_variables_replace_the_fallback() -> None:
    env = {"DB2_DSN": "postgresql://app:pw@us.example.org/residents"}
    shard_map = load_shard_map(SHIPPED, environ=env)
    assert shard_map.shard("db_us").dsn == env["DB2_DSN"]
    assert shard_map.shard("default").dsn == "embedded:default"


def test_several_countries_per_shard_and_reject(tmp_path: Path) -> None:
    path = tmp_path / "shards.yaml"
    path.write_text(
        "shards:\n  eu: {dsn: 'host=eu'}\n  us: {dsn: 'host=us'}\n"
        "routes:\n  eu: [DE, fr, 'NO']\n  us: [US, CA]\ndefault: reject\n"
    )
    shard_map = load_shard_map(path, environ={})
    assert shard_map.shard("eu").countries == {"DE", "FR", "NO"}
    assert shard_map.route_for("CA").name == "us"  # type: ignore[union-attr]
    assert shard_map.route_for("JP") is None
    assert shard_map.default is None


BAD_MAPS = [
    pytest.param(
        "shards:\n  a: {dsn: x\n  b: 1\n", "line 3, column 4: invalid YAML", id="malformed-yaml"
    ),
    pytest.param("- just\n- a list\n", "expected a mapping", id="not-a-mapping"),
    pytest.param("routes: {}\ndefault: reject\n", "shards:", id="no-shards"),
    pytest.param(
        "shards: {a: {dsn: 'host=a'}, b: {dsn: 'host=b'}}\nroutes: {a: [US], b: [US]}\ndefault: a",
        "routes.b[0]: country US is routed to both a and b",
        id="country-under-two-shards",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\nroutes:\n  eu: [DE]\ndefault: a\n",
        "routes.eu: route to unknown shard 'eu'",
        id="route-to-unknown-shard",
    ),
    pytest.param(
        "shards:\n  a: {dsn: '${PIPELINE_TEST_SURELY_UNSET}'}\ndefault: a\n",
        "shards.a.dsn: environment variable PIPELINE_TEST_SURELY_UNSET is not set",
        id="unset-variable-without-fallback",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\nroutes:\n  a: [XX]\ndefault: a\n",
        "routes.a[0]: 'XX' is not an ISO 3166-1 alpha-2 country code",
        id="not-a-country",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\nroutes:\n  a: [NO]\ndefault: a\n",
        "write 'NO' in quotes",
        id="bare-NO-is-false-in-yaml",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\ndefault: b\n",
        "default: 'b' is not a shard",
        id="unknown-default",
    ),
    pytest.param("shards:\n  a: {dsn: 'host=a'}\n", "default: missing", id="no-default"),
    pytest.param("shards:\n  a: {}\ndefault: a\n", "shards.a.dsn: missing", id="no-dsn"),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a', pasword: x}\ndefault: a\n",
        "shards.a.pasword: unknown key",
        id="typo-in-shard",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\nroute:\n  a: [US]\ndefault: a\n",
        "route: unknown key",
        id="typo-at-top",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=a'}\n  a: {dsn: 'host=b'}\ndefault: a\n",
        "duplicate key 'a'",
        id="shard-defined-twice",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'user=x password'}\ndefault: a\n",
        "shards.a.dsn: not a valid libpq connection string",
        id="malformed-dsn",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'host=x'}\n  b: {dsn: 'host=x'}\ndefault: a\n",
        "shards.b.dsn: the same database as shard a",
        id="two-shards-one-database",
    ),
    pytest.param(
        "shards:\n  reject: {dsn: 'host=a'}\ndefault: reject\n",
        "'reject' is reserved",
        id="shard-named-reject",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_MAPS)
def test_bad_shard_map_exits_2_with_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "shards.yaml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]], "one line, no traceback"
    assert lines[0].startswith(f"Error: {path}: ")
    assert message in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.yaml"), "init"])
    assert result.exit_code == 2
    assert "nope.yaml: file not found" in result.output


def test_pipeline_config_variable_selects_the_map(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("shards: {}\n")
    result = CliRunner().invoke(cli, ["status"], env={"PIPELINE_CONFIG": str(path)})
    assert result.exit_code == 2
    assert "elsewhere.yaml: shards:" in result.output


def test_config_error_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "shards.yaml"
    path.write_text("shards:\n  a: {dsn: 'host=a'}\ndefault: a\nroutes:\n  a: [ZZ]\n")
    with pytest.raises(ConfigError, match=r"routes\.a\[0\]"):
        load_shard_map(path, environ={})
