"""The shard map: parsing, ${VAR} expansion, routing, and one clear error per mistake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import ShardMap, _parse, load_shard_map
from pipeline.config_yaml import MAX_CONFIG_BYTES
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
        "shards: {a: {dsn: 'host=a'}}\nroutes: {a: [US, us]}\ndefault: a",
        "routes.a[1]: country US is listed twice for a",
        id="country-twice-under-one-shard",
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
        "shards:\n  a: {dsn: '${PIPELINE_TEST_SURELY_UNSET:-}'}\ndefault: a\n",
        "shards.a.dsn: empty after expanding PIPELINE_TEST_SURELY_UNSET",
        id="empty-fallback-is-no-dsn",
    ),
    pytest.param(
        "shards:\n  a: {dsn: '${PIPELINE_TEST_SURELY_UNSET:-host=a'}\ndefault: a\n",
        "shards.a.dsn: a ${ without its closing }",
        id="unterminated-variable",
    ),
    pytest.param(
        "shards:\n  a: {dsn: '${PIPELINE_TEST_SURELY_UNSET-host=a}'}\ndefault: a\n",
        "is followed by neither } nor :-",
        id="unsupported-variable-form",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'postgresql://etl:cr/3t@x@h/db'}\ndefault: a\n",
        "shards.a.dsn: libpq would misread this URI: an unencoded @ may only end",
        id="unencoded-at-in-uri-password",
    ),
    pytest.param(
        "shards:\n  a: {dsn: 'postgresql:///db?host=/tmp&user=me@corp'}\ndefault: a\n",
        "percent-encode them (@ as %40",
        id="unencoded-at-in-uri-query",
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


@pytest.mark.parametrize(
    ("dsn", "environ", "expected"),
    [
        ("${A:-${B}}", {"B": "host=b"}, "host=b"),
        ("${A:-${B}}", {"A": "host=a"}, "host=a"),  # B unset: the fallback is not looked at
        ("${A:-${B:-host=c}} dbname=x", {}, "host=c dbname=x"),
        ("${A:-host=${B:-h} port=${C:-5}}", {"C": "6"}, "host=h port=6"),
        ("host=a password=pa$word", {}, "host=a password=pa$word"),  # a lone $ is text
        ("${A}", {"A": "host=${B}"}, "host=${B}"),  # an environment value is not expanded
    ],
)
def test_variables_nest_like_a_shell(dsn: str, environ: dict[str, str], expected: str) -> None:
    path = Path("unused.yaml")
    shard_map = _parse_text(path, f"shards:\n  a: {{dsn: '{dsn}'}}\ndefault: a\n", environ)
    assert shard_map.shard("a").dsn == expected


def _parse_text(path: Path, text: str, environ: dict[str, str]) -> ShardMap:
    import yaml

    return _parse(path, yaml.safe_load(text), environ)


def test_an_empty_dsn_from_the_environment_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shards.yaml"
    path.write_text("shards:\n  a: {dsn: '${PW_DSN}'}\ndefault: a\n")
    result = CliRunner().invoke(cli, ["--config", str(path), "status"], env={"PW_DSN": "  "})
    assert result.exit_code == 2
    assert "shards.a.dsn: empty after expanding PW_DSN: set the variable" in result.output


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo"])
def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path: Path, special: str) -> None:
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo.yaml"
        os.mkfifo(path)  # opened for reading, it would wait for a writer forever
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"Error: {path}: not a regular file" + (
        " (a configuration file is a YAML file)"
    )


def test_a_config_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "shards.yaml"
    with path.open("w") as stream:
        stream.write("shards:\n  a: {dsn: 'host=a'}\ndefault: a\n")
        stream.write("#" * MAX_CONFIG_BYTES)
    result = CliRunner().invoke(cli, ["--config", str(path), "status"])
    assert result.exit_code == 2
    assert result.output == f"Error: {path}: larger than 1024 KiB: not a configuration file\n"


def test_a_dsn_never_shows_in_a_shards_repr() -> None:
    shard_map = load_shard_map(SHIPPED, environ={"DB2_DSN": "host=h password=Zq9Xw7"})
    assert shard_map.shard("db_us").dsn == "host=h password=Zq9Xw7"  # held, and used
    assert "Zq9Xw7" not in repr(shard_map) and "Zq9Xw7" not in repr(shard_map.shard("db_us"))
    assert "db_us" in repr(shard_map)  # the repr still says which shard it is
