"""Reading a configuration file (the shard map, the rules, the checks) safely: a regular file
of at most MAX_CONFIG_BYTES, UTF-8 text, YAML that may not name a key twice. Every error is
a ConfigError that names the file (and, for YAML, the line and column).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.regular_file import NotRegular, TooLarge, read_bounded

MAX_CONFIG_BYTES = 1 << 20  # a shard map, rules or checks file larger than this is refused


def read_yaml(path: Path) -> Any:
    """The YAML document in the file at `path`; ConfigError naming the file if it is none."""
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
    """A configuration file's text: a regular file of at most MAX_CONFIG_BYTES (`--config
    /dev/zero` would otherwise be read until memory runs out, a FIFO block forever)."""
    try:
        data, _ = read_bounded(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (use --config or PIPELINE_CONFIG)") from None
    except NotRegular:
        raise ConfigError(
            f"{path}: not a regular file (a configuration file is a YAML file)"
        ) from None
    except TooLarge:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
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
