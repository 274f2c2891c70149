"""Sources: which system of record a file comes from, and whether it is the whole truth.

A load names its source on the command line (`pipeline load --source crm --mode snapshot`)
or the shard map declares sources by file name, so that `make load` needs no flags:

    sources:
      crm:     {pattern: "crm-*.csv", mode: snapshot}
      signups: {pattern: "signups-*.ndjson"}          # mode: append, the default

Every row a load writes remembers its source (residents.source; NULL for a load without
one, or a hand edit). An `append` load inserts and updates. A `snapshot` of source S is the
whole truth for S: on each shard, the rows of S whose id is not in the file's part for that
shard are deleted, in the shard's transaction for the file (pipeline.writer), within the
limit `--max-deletes` sets. Rows of other sources and rows written by hand are never touched.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Mode = Literal["append", "snapshot"]
MODES: tuple[Mode, ...] = ("append", "snapshot")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
SOURCE_NAME_RULE = "letters, digits, _, . and -, at most 63, starting with a letter or digit"
_SOURCE_KEYS = {"pattern", "mode"}


@dataclass(frozen=True)
class Source:
    """A named source and how its files load."""

    name: str
    mode: Mode = "append"
    pattern: str | None = None  # declared ones: a file-name glob (fnmatch), e.g. "crm-*.csv"

    @property
    def snapshot(self) -> bool:
        return self.mode == "snapshot"

    def describe(self) -> str:
        return f"source {self.name} ({self.mode})"


def source_for(path: Path, given: Source | None, declared: tuple[Source, ...]) -> Source | None:
    """The source a file loads under: the command line's, else the first declared source
    whose pattern its name matches, else none."""
    if given is not None:
        return given
    for source in declared:
        if source.pattern is not None and fnmatch.fnmatchcase(path.name, source.pattern):
            return source
    return None


def last_of_source(
    source: Source | None, later: Iterable[Path], given: Source | None, declared: tuple[Source, ...]
) -> bool:
    """Whether a file of snapshot `source` is the last of its source among the run's files
    (`later`: those after it): then it is the source's state, and the ledger's entry for its
    bytes does not skip it on a shard that loaded another file of the source since (a
    snapshot sent again after another one, ledger_find.sql's `superseded`). An earlier file
    of the run is skipped as before, so that a re-run stays a no-op."""
    if source is None or not source.snapshot:
        return False
    return not any(source_for(path, given, declared) == source for path in later)


def parse_sources(raw: Any, fail: Callable[[str, str], Exception]) -> tuple[Source, ...]:
    """The shard map's `sources:` mapping (name -> {pattern, mode}), validated."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise fail("sources", "expected a mapping of source name to {pattern: ..., mode: ...}")
    sources = []
    for name, body in raw.items():
        key = f"sources.{name}"
        if not isinstance(name, str) or not SOURCE_NAME.match(name):
            raise fail(key, f"a source name is {SOURCE_NAME_RULE}")
        if not isinstance(body, dict):
            raise fail(key, "expected a mapping with pattern (and mode)")
        extra = sorted(set(map(str, body)) - _SOURCE_KEYS)
        if extra:
            raise fail(f"{key}.{extra[0]}", "unknown key (expected pattern, mode)")
        pattern = body.get("pattern")
        if not isinstance(pattern, str) or not pattern.strip() or "/" in pattern:
            raise fail(f"{key}.pattern", "expected a file-name pattern such as 'crm-*.csv'")
        mode = body.get("mode", "append")
        if mode not in MODES:
            raise fail(f"{key}.mode", f"{mode!r} is not one of {', '.join(MODES)}")
        sources.append(Source(name, mode, pattern))
    return tuple(sources)
