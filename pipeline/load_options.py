"""The options of a `pipeline load` run (pipeline.load), as the command line gives them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import DEFAULT_REJECTS_DIR
from pipeline.routing import Budget
from pipeline.shard_link import Timeouts
from pipeline.sync import Source


@dataclass
class LoadOptions:
    max_rejects: Budget = field(default_factory=lambda: Budget(10, True))
    rejects_dir: Path = DEFAULT_REJECTS_DIR
    force: bool = False
    dry_run: bool = False
    encoding: str = "utf-8"
    timeouts: Timeouts = field(default_factory=Timeouts)
    # CSV and NDJSON may be read by pyarrow (pipeline.source_arrow, source_arrow_json);
    # False: by Python's readers only (the differential tests compare the two).
    bulk_read: bool = True
    # The source every file loads under (else the shard map's by file name; pipeline.sync),
    # and how much of its rows on a shard a snapshot may delete.
    source: Source | None = None
    max_deletes: Budget = field(default_factory=lambda: Budget(10, True))
