"""The shard map: `config/shards.yaml` parsed and validated once, into typed objects.

This is the only module that reads YAML or the environment. Every error names the
file and the key (`config/shards.yaml: routes.db_us[0]: ...`), so a user can fix the
map without reading code.

    shards:
      default: {dsn: "${DB1_DSN:-embedded:default}"}
      db_us:   {dsn: "${DB2_DSN:-embedded:db_us}"}
    routes:
      db_us: [US]
    default: default        # or `reject`
    embedded:               # optional; relative to the project root (see project_root)
      data_dir: .pipeline/postgres
    rules: rules.yaml       # optional: the load rules, relative to this file

The rules file (`config/rules.yaml`) is read here too, by `load_rules`, and
turned into `pipeline.rules.Rules`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycountry
import yaml
from psycopg import conninfo

from pipeline.dsn import is_ambiguous_uri
from pipeline.errors import ConfigError
from pipeline.rules import Rules, parse_rules

DEFAULT_CONFIG_PATH = Path("config/shards.yaml")
DEFAULT_REJECTS_DIR = Path("data/rejects")  # where `pipeline load` writes rejects files
DEFAULT_EMBEDDED_DIR = Path(".pipeline/postgres")
DEFAULT_RULES_NAME = "rules.yaml"
DEFAULT_CHECKS_NAME = "checks.yaml"
EMBEDDED_PREFIX = "embedded:"
REJECT = "reject"

_TOP_LEVEL_KEYS = {"shards", "routes", "default", "embedded", "rules", "checks"}
_SHARD_KEYS = {"dsn"}
_EMBEDDED_KEYS = {"data_dir"}
_SHARD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_CONFIG_BYTES = 1 << 20  # a shard map, rules or checks file larger than this is refused


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
    _routes: Mapping[str, str] = field(default_factory=dict, repr=False)

    def shard(self, name: str) -> Shard:
        for shard in self.shards:
            if shard.name == name:
                return shard
        raise ConfigError(f"{self.path}: no shard named {name!r}")

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
    document = _read_yaml(path)
    return _parse(path, document, environ)


def _read_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None


def _read_text(path: Path) -> str:
    """A configuration file's text: a regular file of at most MAX_CONFIG_BYTES.

    `--config /dev/zero` would otherwise be read until memory runs out, and a FIFO would
    block forever: the file is opened without blocking and looked at before it is read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (use --config or PIPELINE_CONFIG)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file (a configuration file is a YAML file)")
        try:
            data = stream.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text ({exc.reason})") from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one,
    and a shard defined twice is a mistake the user wants to hear about."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


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
        dsns[name] = _check_dsn(f"{key}.dsn", _expand(dsn, environ, f"{key}.dsn", fail), fail)

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
        _routes=routes,
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
            routes[country] = name
    return routes


def _beside(path: Path, raw: Any, key: str, default: str, fail: Any) -> Path:
    """A file named by `key` (relative to the shard map), by default `default` beside it."""
    if raw is None:
        return path.parent / default
    if not isinstance(raw, str) or not raw:
        raise fail(key, "expected the path of a file, relative to this file")
    return path.parent / raw


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
    return _read_yaml(path)


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


class _Expander:
    """`${VAR}` and `${VAR:-fallback}` expanded the way a shell does: the fallback applies when
    VAR is unset or empty, may itself hold `${...}` (`${A:-${B:-x}}`), and is only looked at
    when it applies. Values from the environment are not expanded again. Any other `${`
    form is refused, rather than left in the DSN as text."""

    def __init__(self, value: str, environ: Mapping[str, str], key: str, fail: Any) -> None:
        self.value, self.environ, self.key, self.fail = value, environ, key, fail
        self.names: list[str] = []  # the variables named, for messages

    def expand(self) -> str:
        text, _ = self._text(0, evaluate=True, inside=False)
        return text

    def _text(self, i: int, evaluate: bool, inside: bool) -> tuple[str, int]:
        """The expansion of value[i:], up to the `}` closing a fallback when `inside`;
        returns it and the index it stopped at (that `}`, or the end)."""
        out: list[str] = []
        value = self.value
        while i < len(value):
            if inside and value[i] == "}":
                return "".join(out), i
            if value.startswith("${", i):
                text, i = self._variable(i + 2, evaluate)
                out.append(text)
                continue
            out.append(value[i])
            i += 1
        if inside:
            raise self._unsupported("a ${ without its closing }")
        return "".join(out), i

    def _variable(self, i: int, evaluate: bool) -> tuple[str, int]:
        match = _VARIABLE_NAME.match(self.value, i)
        if match is None:
            raise self._unsupported("${ must be followed by a variable name")
        name, i = match.group(), match.end()
        self.names.append(name)
        fallback: str | None = None
        if self.value.startswith("}", i):
            i += 1
        elif self.value.startswith(":-", i):
            current = self.environ.get(name)
            fallback, i = self._text(i + 2, evaluate and not current, inside=True)
            i += 1  # the closing }
        else:
            raise self._unsupported(f"${{{name} is followed by neither }} nor :-")
        if not evaluate:
            return "", i
        current = self.environ.get(name)
        if current:
            return current, i
        if fallback is not None:
            return fallback, i
        raise self.fail(
            self.key,
            f"environment variable {name} is not set and has no fallback (${{{name}:-...}})",
        )

    def _unsupported(self, why: str) -> ConfigError:
        return self.fail(  # type: ignore[no-any-return]
            self.key, f"{why} (write ${{VAR}} or ${{VAR:-fallback}}; a fallback may nest them)"
        )


def _expand(value: str, environ: Mapping[str, str], key: str, fail: Any) -> str:
    """`value` with its ${VAR} expanded (see _Expander); refuses an empty result, which libpq
    would silently take for its defaults (the local server, the user's own name)."""
    expander = _Expander(value, environ, key, fail)
    dsn = expander.expand().strip()
    if not dsn:
        names = ", ".join(dict.fromkeys(expander.names))
        raise fail(
            key,
            f"empty after expanding {names}: set the variable or give a non-empty fallback "
            "(an empty DSN would mean libpq's defaults)",
        )
    return dsn


def _check_dsn(key: str, dsn: str, fail: Any) -> str:
    if dsn.startswith(EMBEDDED_PREFIX):
        database = dsn[len(EMBEDDED_PREFIX) :]
        if not _DB_NAME.match(database):
            raise fail(key, "embedded:NAME needs a database name of letters, digits and _")
        return dsn
    if is_ambiguous_uri(dsn):
        # libpq would read part of the password as the host, port or database (and print
        # it in its errors): refuse, and say how to write it.
        raise fail(
            key,
            "libpq would misread this URI: an unencoded @ may only end user:password@, and "
            "a password may not hold an unencoded /; percent-encode them (@ as %40, / as %2F; "
            "also : %3A, ? %3F, # %23, % %25), or use a key/value string with password='...'",
        )
    try:
        conninfo.conninfo_to_dict(dsn)
    except Exception:
        # libpq's message can quote the string back, password and all: do not pass it on.
        raise fail(key, "not a valid libpq connection string or postgresql:// URI") from None
    return dsn
