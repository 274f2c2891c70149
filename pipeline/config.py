"""The shard map: `config/shards.yaml` parsed and validated once, into typed objects.

With the two modules it reads files and DSNs with (`pipeline.config_yaml`, and
`pipeline.config_dsn` for `${VAR}` from the environment), this is the only module that reads
YAML or the environment. Every error names the file and the key
(`config/shards.yaml: routes.db_us[0]: ...`), so a user can fix the map without reading code.

    shards:
      default: {dsn: "${DB1_DSN:-embedded:default}"}
      db_us:   {dsn: "${DB2_DSN:-embedded:db_us}"}
    routes:
      db_us: [US]
    default: default        # or `reject`
    embedded:               # optional; relative to the project root (see project_root)
      data_dir: .pipeline/postgres
    rules: rules.yaml       # optional: the load rules, relative to this file
    erasure_key_file: ~/.config/resident-pipeline/erasure.key   # optional (pipeline.erasure_key)

The rules file (`config/rules.yaml`) is read here too, by `load_rules`, and
turned into `pipeline.rules.Rules`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry

from pipeline.config_dsn import EMBEDDED_PREFIX, check_dsn, expand
from pipeline.config_yaml import read_yaml
from pipeline.errors import ConfigError
from pipeline.rules import Rules, parse_rules
from pipeline.sync import Source, parse_sources

DEFAULT_CONFIG_PATH = Path("config/shards.yaml")
DEFAULT_REJECTS_DIR = Path("data/rejects")  # where `pipeline load` writes rejects files
DEFAULT_EMBEDDED_DIR = Path(".pipeline/postgres")
DEFAULT_RULES_NAME = "rules.yaml"
DEFAULT_CHECKS_NAME = "checks.yaml"
REJECT = "reject"

_TOP_LEVEL_KEYS = {
    "shards", "routes", "default", "embedded", "rules", "checks", "sources", "erasure_key_file",
}  # fmt: skip
ERASURE_KEY_ENV = "PIPELINE_ERASURE_KEY"  # the erasure key itself, else erasure_key_file
_SHARD_KEYS = {"dsn"}
_EMBEDDED_KEYS = {"data_dir"}
_SHARD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Shard:
    """One regional database and the countries routed to it."""

    name: str
    # After ${VAR} expansion; may hold a password, so never print it (see pipeline.dsn), not
    # even in a repr.
    dsn: str = field(repr=False)
    countries: frozenset[str]  # countries the routes send here (not counting the default)
    is_default: bool  # also holds every country no route names

    @property
    def embedded_database(self) -> str | None:
        """The database name when the DSN is `embedded:NAME`, else None."""
        if self.dsn.startswith(EMBEDDED_PREFIX):
            return self.dsn[len(EMBEDDED_PREFIX) :]
        return None


@dataclass(frozen=True)
class ShardMap:
    """The parsed shard map: which shard holds the residents of each country."""

    path: Path
    shards: tuple[Shard, ...]  # in the order the file lists them: the order of every output
    default: str | None  # the default shard's name, or None when unrouted countries are rejected
    embedded_dir: Path
    rules_path: Path  # the load rules (see load_rules)
    checks_path: Path  # the data-quality checks (see pipeline.checks.load_checks)
    sources: tuple[Source, ...] = ()  # declared sources, by file name (pipeline.sync)
    _routes: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The erasure key (pipeline.erasure_key reads and checks it): the file the map names,
    # and PIPELINE_ERASURE_KEY as the environment held it when the map was read.
    erasure_key_file: Path | None = None
    erasure_key_env: str | None = field(default=None, repr=False)

    def shard(self, name: str) -> Shard:
        for shard in self.shards:
            if shard.name == name:
                return shard
        names = ", ".join(shard.name for shard in self.shards)
        raise ConfigError(f"no shard named {name!r} in {self.path} (its shards: {names})")

    def route_for(self, country: str) -> Shard | None:
        """The shard that holds residents of `country`, or None when they are to be rejected."""
        name = self._routes.get(country, self.default)
        return None if name is None else self.shard(name)

    @property
    def routed_countries(self) -> frozenset[str]:
        return frozenset(self._routes)

    def other_routed_countries(self, shard: Shard) -> frozenset[str]:
        """Countries the routes send to shards other than `shard`."""
        return frozenset(c for c, name in self._routes.items() if name != shard.name)

    @property
    def uses_embedded(self) -> bool:
        return any(s.embedded_database is not None for s in self.shards)


def load_shard_map(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> ShardMap:
    """Read, expand and validate a shard map; raise ConfigError naming the file and key."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    environ = os.environ if environ is None else environ
    document = read_yaml(path)
    return _parse(path, document, environ)


def _parse(path: Path, doc: Any, environ: Mapping[str, str]) -> ShardMap:
    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}" if key else f"{path}: {message}")

    if not isinstance(doc, dict):
        raise fail("", "expected a mapping with keys shards, routes and default")
    unknown = sorted(set(map(str, doc)) - _TOP_LEVEL_KEYS)
    if unknown:
        raise fail(
            unknown[0], f"unknown key (expected one of {', '.join(sorted(_TOP_LEVEL_KEYS))})"
        )

    raw_shards = doc.get("shards")
    if not isinstance(raw_shards, dict) or not raw_shards:
        raise fail(
            "shards", "expected a mapping of shard name to {dsn: ...}, with at least one shard"
        )
    dsns: dict[str, str] = {}
    for name, body in raw_shards.items():
        key = f"shards.{name}"
        if not isinstance(name, str) or not _SHARD_NAME.match(name):
            raise fail(key, "a shard name is letters, digits, _ and -, starting with a letter")
        if name == REJECT:
            raise fail(key, f"{REJECT!r} is reserved (default: reject refuses unrouted countries)")
        if not isinstance(body, dict):
            raise fail(key, "expected a mapping with a dsn")
        extra = sorted(set(map(str, body)) - _SHARD_KEYS)
        if extra:
            raise fail(f"{key}.{extra[0]}", "unknown key (expected dsn)")
        dsn = body.get("dsn")
        if not isinstance(dsn, str) or not dsn.strip():
            raise fail(f"{key}.dsn", "missing: a libpq connection string, a URI or embedded:NAME")
        dsns[name] = check_dsn(f"{key}.dsn", expand(dsn, environ, f"{key}.dsn", fail), fail)

    seen: dict[str, str] = {}
    for name, dsn in dsns.items():
        if dsn in seen:
            # Two shards in one database would hold each other's rows (and a load would
            # wait forever on its own lock).
            raise fail(f"shards.{name}.dsn", f"the same database as shard {seen[dsn]}")
        seen[dsn] = name
    routes = _parse_routes(doc.get("routes"), dsns, fail)

    default = doc.get("default")
    if default is None:
        raise fail("default", f"missing: name the shard for unrouted countries, or {REJECT!r}")
    if not isinstance(default, str) or (default != REJECT and default not in dsns):
        raise fail("default", f"{default!r} is not a shard in shards (nor {REJECT!r})")
    default_name = None if default == REJECT else default

    shards = tuple(
        Shard(
            name=name,
            dsn=dsn,
            countries=frozenset(c for c, s in routes.items() if s == name),
            is_default=name == default_name,
        )
        for name, dsn in dsns.items()
    )
    shard_map = ShardMap(
        path=path,
        shards=shards,
        default=default_name,
        embedded_dir=_parse_embedded(path, doc.get("embedded"), fail),
        rules_path=_beside(path, doc.get("rules"), "rules", DEFAULT_RULES_NAME, fail),
        checks_path=_beside(path, doc.get("checks"), "checks", DEFAULT_CHECKS_NAME, fail),
        sources=parse_sources(doc.get("sources"), fail),
        _routes=routes,
        erasure_key_file=_parse_key_file(path, doc.get("erasure_key_file"), fail),
        erasure_key_env=environ.get(ERASURE_KEY_ENV) or None,
    )
    embedded = doc.get("embedded") or {}
    given = embedded.get("data_dir", str(DEFAULT_EMBEDDED_DIR))
    _refuse_moved_embedded_data(shard_map, Path(given).expanduser(), fail)
    return shard_map


def _parse_routes(raw: Any, dsns: Mapping[str, str], fail: Any) -> dict[str, str]:
    """Map each routed country to its shard, refusing unknown shards, bad codes and doubles."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise fail("routes", "expected a mapping of shard name to a list of country codes")
    routes: dict[str, str] = {}
    for name, countries in raw.items():
        key = f"routes.{name}"
        if name not in dsns:
            raise fail(key, f"route to unknown shard {name!r} (shards: {', '.join(dsns)})")
        if not isinstance(countries, list):
            raise fail(key, "expected a list of ISO 3166-1 alpha-2 country codes, e.g. [US]")
        for i, code in enumerate(countries):
            item = f"{key}[{i}]"
            if isinstance(code, bool):
                # YAML 1.1 reads a bare NO (Norway) as false.
                raise fail(
                    item, f"{code!r} is not a country code (write 'NO' in quotes for Norway)"
                )
            if not isinstance(code, str) or pycountry.countries.get(alpha_2=code.upper()) is None:
                raise fail(item, f"{code!r} is not an ISO 3166-1 alpha-2 country code")
            country = code.upper()
            owner = routes.get(country)
            if owner is not None and owner != name:
                raise fail(item, f"country {country} is routed to both {owner} and {name}")
            if owner is not None:  # a slip, where another country was meant
                raise fail(item, f"country {country} is listed twice for {name}")
            routes[country] = name
    return routes


def _beside(path: Path, raw: Any, key: str, default: str, fail: Any) -> Path:
    """A file named by `key` (relative to the shard map), by default `default` beside it."""
    if raw is None:
        return path.parent / default
    if not isinstance(raw, str) or not raw:
        raise fail(key, "expected the path of a file, relative to this file")
    return path.parent / raw


def _parse_key_file(path: Path, raw: Any, fail: Any) -> Path | None:
    """`erasure_key_file:`: an absolute or ~ path, outside the project (a key kept in the
    repository would be committed with it)."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw or not Path(raw).expanduser().is_absolute():
        raise fail("erasure_key_file", "expected an absolute or ~/ path, outside the project")
    given = Path(raw).expanduser()
    if given.resolve().is_relative_to(project_root(path).resolve()):
        raise fail("erasure_key_file", "the key must live outside the project, not in it")
    return given


def load_rules(shard_map: ShardMap) -> Rules:
    """The load rules the shard map points at (by default rules.yaml beside it)."""
    return parse_rules(shard_map.rules_path, read_beside(shard_map, shard_map.rules_path, "rules"))


def read_beside(shard_map: ShardMap, path: Path, key: str) -> Any:
    """The YAML file at `path`, a file the shard map names by `key` (rules, checks)."""
    if not path.exists():
        raise ConfigError(
            f"{path}: file not found (it lives beside the shard map; "
            f"set `{key}:` in {shard_map.path} to use another file)"
        )
    return read_yaml(path)


def project_root(path: Path) -> Path:
    """The folder a relative `embedded.data_dir` is read from: the shard map's folder, or its
    parent when that folder is named `config` (the shipped layout, config/shards.yaml in the
    project root). Not the working directory: `--config` from elsewhere must find the same
    server, not start an empty one of its own."""
    if path.parent.name == "config":
        return path.parent.parent
    if path.absolute().parent.name == "config":  # `--config shards.yaml` from inside config/
        return path.absolute().parent.parent
    return path.parent


def _parse_embedded(path: Path, raw: Any, fail: Any) -> Path:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise fail("embedded", "expected a mapping with data_dir")
    extra = sorted(set(map(str, raw)) - _EMBEDDED_KEYS)
    if extra:
        raise fail(f"embedded.{extra[0]}", "unknown key (expected data_dir)")
    data_dir = raw.get("data_dir", str(DEFAULT_EMBEDDED_DIR))
    if not isinstance(data_dir, str) or not data_dir:
        raise fail("embedded.data_dir", "expected a folder path")
    given = Path(data_dir).expanduser()
    return given if given.is_absolute() else project_root(path) / given


def _refuse_moved_embedded_data(shard_map: ShardMap, given: Path, fail: Any) -> None:
    """Before this version a relative data_dir was read from the working directory. Should the
    server's data sit there and not where the map now points, starting an empty server would
    look like lost data: say where it is instead."""
    if not shard_map.uses_embedded or given.is_absolute():
        return
    old, new = given, shard_map.embedded_dir
    if old.absolute() == new.absolute() or (new / "PG_VERSION").exists():
        return
    if (old / "PG_VERSION").exists():
        raise fail(
            "embedded.data_dir",
            f"the embedded server's data is in {old.absolute()} (relative to the working "
            f"directory), but a relative data_dir is now read from the project root: "
            f"{new}; move the folder there, or set data_dir to {old.absolute()}",
        )
