"""What a load did, file by file and shard by shard: the counts the summary, `--json` and the
exit code are made of. `rows_read = rows_loaded + rows_rejected + rows_pending` for every
file and in total."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import EXIT_DATA, EXIT_OK
from pipeline.routing import Budget
from pipeline.sync import Source


@dataclass
class ShardCounts:
    """What one file did to one shard."""

    staged: int = 0  # rows routed here and sent
    rejected: int = 0  # refused by the checks on this shard
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    # Of `unchanged`: rows left as a later file of this command already wrote them (a file
    # completed late by a re-run). The ledger counts them as unchanged: they were not written.
    kept: int = 0
    # A snapshot's deletions (pipeline.sync): how many, by country, the ids (a dry run's
    # --json only), and the rows of the source the shard held before.
    deleted: int = 0  # rows removed: by delete markers (marked_deleted) and a snapshot
    marked_deleted: int = 0  # delete markers that found their row
    not_found: int = 0  # delete markers whose id the shard did not hold
    deleted_by_country: dict[str, int] = field(default_factory=dict)
    deleted_ids: list[int] | None = None
    source_rows: int = 0
    already_loaded: bool = False  # the ledger held this file: nothing was sent
    # The shard already held later files of this command (a file completed late): what they
    # left unchanged or deleted there is not known as theirs, and takes this file's values.
    before_later: bool = False
    earlier_rejected: int = 0  # then: how many of its rows the run that loaded it rejected

    @property
    def loaded(self) -> int:
        """The file's rows this shard took: written, left unchanged, or delete markers."""
        return self.inserted + self.updated + self.unchanged + self.marked_deleted + self.not_found

    def as_loaded_earlier(self) -> int:
        """For a file an earlier run loaded here (`already_loaded`): count its rows as that
        run left them, its rejects from the ledger; returns how many it loaded."""
        self.rejected = min(self.earlier_rejected, self.staged)
        return self.staged - self.rejected


@dataclass
class FileResult:
    path: str
    format: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_pending: int = 0
    skipped: bool = False
    error: str | None = None
    interrupted: bool = False  # stopped before every shard committed it (see LoadResult)
    warnings: list[str] = field(default_factory=list)
    shards: dict[str, ShardCounts] = field(default_factory=dict)
    shard_errors: dict[str, str] = field(default_factory=dict)
    source: Source | None = None  # the source it loaded under (pipeline.sync)
    # Rows the rules refused whose shard does not take the file this run (it holds it, or
    # failed): not this run's rejects, still the file's, which its budget is about.
    refused_elsewhere: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "source": self.source.name if self.source else None,
            "mode": self.source.mode if self.source else "append",
            **({"deleted": self._deleted()} if self.source and self.source.snapshot else {}),
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_rejected": self.rows_rejected,
            "rows_pending": self.rows_pending,
            "skipped": self.skipped,
            "error": self.error,
            "interrupted": self.interrupted,
            "shard_errors": self.shard_errors,
            "warnings": self.warnings,
        }

    def account(self, early_rejects: int, force: bool) -> None:
        """Once the file has committed or rolled back on every shard: rows_read = loaded +
        rejected + pending, shard by shard (`early_rejects`: the records refused before
        they reached a shard; `force`: the load's --force)."""
        self.rows_rejected = early_rejects
        for name, counts in self.shards.items():
            if name in self.shard_errors:
                self.rows_pending += counts.staged  # re-running the command loads them
                counts.inserted = counts.updated = counts.unchanged = counts.rejected = 0
                counts.kept = counts.deleted = counts.marked_deleted = counts.not_found = 0
                counts.deleted_by_country = {}
            elif counts.already_loaded:
                # As the run that loaded the file left them (its rejects file has the refused).
                self.rows_loaded += counts.as_loaded_earlier()
                self.rows_rejected += counts.rejected
            else:
                self.rows_loaded += counts.loaded
                self.rows_rejected += counts.rejected
                # (--force loads the later files again in this run, after this one.)
                if counts.before_later and not force and counts.loaded:
                    self.warnings.append(
                        f"{self.path}: loaded on shard {name} after later files of this"
                        " command it already held: the rows they wrote were kept, but ids they"
                        " left unchanged or deleted there now hold this file's values; load"
                        " those files again with --force to have them apply last"
                    )

    def too_many_deletes(self, budget: Budget) -> str | None:
        """Why a snapshot must not go ahead: a shard where it would delete more of the
        source's rows than `budget` allows (a truncated export must not wipe a shard)."""
        for name, counts in self.shards.items():
            if counts.deleted and budget.exceeded(counts.deleted, counts.source_rows):
                assert self.source is not None
                return (
                    f"the snapshot of source {self.source.name} would delete {counts.deleted} of"
                    f" the {counts.source_rows} rows it has on shard {name}, over the limit of"
                    f" {budget} (--max-deletes): the whole file is refused, nothing of it was"
                    " loaded"
                )
        return None

    def refuse(self, error: str) -> str:
        """The file is refused as a whole (`error`): nothing of it is loaded in this run.
        A shard an earlier run loaded it on (while another failed) holds its part as that
        run left it: counted so, and said, as a re-run that completes a file counts it.
        Returns the error as said."""
        held = {n: c for n, c in self.shards.items() if c.already_loaded}
        kept = sum(c.as_loaded_earlier() for c in held.values())
        if held:
            shards = ("shard " if len(held) == 1 else "shards ") + ", ".join(held)
            error += (
                f" in this run; {shards} loaded it in an earlier run and"
                f" {'keeps its' if len(held) == 1 else 'keep their'} part"
            )
        self.error = error
        self.rows_loaded, self.rows_pending, self.rows_rejected = kept, 0, self.rows_read - kept
        return error

    def _deleted(self) -> dict[str, Any]:
        """A snapshot's deletions, shard by shard: by country, and the ids in a dry run."""
        deleted: dict[str, Any] = {}
        for name, counts in self.shards.items():
            entry: dict[str, Any] = {"rows": counts.deleted, "countries": counts.deleted_by_country}
            if counts.deleted_ids is not None:
                entry["ids"] = counts.deleted_ids
            deleted[name] = entry
        return deleted


@dataclass
class LoadResult:
    load_id: str
    dry_run: bool
    files: list[FileResult]
    shard_names: list[str]
    rejects_file: Path | None
    interrupted: str | None = None  # why the load stopped early ("interrupted by SIGINT")
    not_started: list[str] = field(default_factory=list)  # files it did not come to

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.files)

    def shard_totals(self) -> dict[str, dict[str, int]]:
        totals = {
            n: {
                "inserted": 0,
                "updated": 0,
                "unchanged": 0,
                "kept": 0,
                "rejected": 0,
                "deleted": 0,
                "not_found": 0,
            }
            for n in self.shard_names
        }
        for f in self.files:
            for name, counts in f.shards.items():
                for key in totals[name]:
                    totals[name][key] += getattr(counts, key)
        return totals

    @property
    def exit_code(self) -> int:
        failed = any(f.error or f.shard_errors for f in self.files)
        return EXIT_DATA if failed or self.interrupted else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "load_id": self.load_id,
            "dry_run": self.dry_run,
            "files": [f.to_json() for f in self.files],
            "rows_read": self.total("rows_read"),
            "rows_loaded": self.total("rows_loaded"),
            "rows_rejected": self.total("rows_rejected"),
            "rows_pending": self.total("rows_pending"),
            "shards": self.shard_totals(),
            "rejects_file": str(self.rejects_file) if self.rejects_file else None,
            "interrupted": self.interrupted,
            "not_started": self.not_started,
        }


# Called with (file result so far, records read so far) as a file streams, and once more
# when it is done; the CLI draws its progress bar from this.
Progress = Callable[[FileResult, int, bool], None]
