"""What `pipeline load` tells a person: a progress bar while it runs, a summary when done.

Every line goes through `printable` (pipeline.printable): file names (and the messages
quoting them) may hold newlines or terminal escape sequences, which must not reach the
terminal raw.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

from pipeline.load_result import FileResult, LoadResult
from pipeline.printable import printable


class ProgressBars:
    """One tqdm bar per file on stderr (rows, rows/s); silent when quiet or not a terminal."""

    def __init__(self, quiet: bool) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._bars: dict[str, Any] = {}

    def __call__(self, result: FileResult, rows: int, done: bool) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(result.path)
        if bar is None:
            bar = tqdm(
                desc=printable(result.path),
                unit=" rows",
                unit_scale=True,
                file=sys.stderr,
                leave=False,
            )
            self._bars[result.path] = bar
        bar.update(rows - bar.n)
        if done:
            bar.close()


# What "kept" rows are: left as they were, because they hold a later file's values.
KEPT = "a later file of this command already wrote them"


def _counts(read: int, loaded: int, rejected: int, pending: int) -> str:
    text = f"{read} read = {loaded} loaded + {rejected} rejected"
    return text + (f" + {pending} pending" if pending else "")


def summary_lines(result: LoadResult) -> list[str]:
    """Per file and per shard, then the totals; the arithmetic is shown, and it adds up."""
    lines: list[str] = []
    for f in result.files:
        if f.skipped:
            lines.append(f"{f.path} ({f.format}): skipped, every shard already holds it")
            continue
        counts = _counts(f.rows_read, f.rows_loaded, f.rows_rejected, f.rows_pending)
        if f.error:
            # A shard an earlier run loaded it on keeps its part (FileResult.refuse).
            this_run = " by this run" if f.rows_loaded else ""
            lines.append(
                f"{f.path} ({f.format}): NOT LOADED{this_run}, rejected as a whole: {counts}"
            )
            continue
        source = f" [{f.source.describe()}]" if f.source else ""
        lines.append(f"{f.path} ({f.format}){source}: {counts}")
        pending = f.rows_pending
        for name, c in f.shards.items():
            if name in f.shard_errors:
                state = "NOT COMMITTED (interrupted)" if f.interrupted else "FAILED"
                lines.append(f"  {name}: {state}, {c.staged} rows pending")
                pending -= c.staged
            elif c.already_loaded:
                rejected = f", {c.rejected} of them rejected then" if c.rejected else ""
                lines.append(
                    f"  {name}: already loaded by an earlier run ({c.staged} rows{rejected})"
                )
            elif c.staged or c.deleted:
                lines.append(
                    f"  {name}: {c.inserted} inserted, {c.updated} updated, {c.unchanged} unchanged"
                    + (f" ({c.kept} kept: {KEPT})" if c.kept else "")
                    + (f", {c.rejected} rejected" if c.rejected else "")
                    + (f", {_deleted(c.deleted, c.deleted_by_country)}" if c.deleted else "")
                    + (f", {c.not_found} not found" if c.not_found else "")
                )
        if pending > 0:  # the run stopped before they went to a shard (pipeline.load)
            lines.append(f"  {pending} records pending that no shard was sent")
    total = _counts(
        result.total("rows_read"),
        result.total("rows_loaded"),
        result.total("rows_rejected"),
        result.total("rows_pending"),
    )
    lines.append(f"total: {total}" + (" (dry run: nothing written)" if result.dry_run else ""))
    for name, t in result.shard_totals().items():
        lines.append(
            f"shard {name}: {t['inserted']} inserted, {t['updated']} updated, "
            f"{t['unchanged']} unchanged"
            + (f" ({t['kept']} kept)" if t["kept"] else "")
            + (f", {t['deleted']} deleted" if t["deleted"] else "")
            + (f", {t['not_found']} not found" if t["not_found"] else "")
        )
    if result.rejects_file:
        lines.append(f"rejects: {result.rejects_file}")
    if result.not_started:
        lines.append(f"not started: {', '.join(result.not_started)}")
    return [printable(line) for line in lines]


def _deleted(deleted: int, by_country: dict[str, int]) -> str:
    """The rows a file deleted on a shard, with a snapshot's by country: "12 deleted (DE 10,
    FR 2)"; delete markers' are in the total only."""
    if not by_country:
        return f"{deleted} deleted"
    countries = ", ".join(f"{country} {n}" for country, n in by_country.items())
    swept = sum(by_country.values())
    if swept == deleted:
        return f"{deleted} deleted ({countries})"
    return f"{deleted} deleted ({swept} by the snapshot: {countries})"


def error_lines(result: LoadResult) -> list[str]:
    """Every problem, one line each, with what to do about it."""
    lines = [f.error for f in result.files if f.error]
    failed: dict[str, str] = {}  # the first error of each shard: later ones follow from it
    for f in result.files:
        for name, reason in f.shard_errors.items():
            failed.setdefault(name, reason)
    lines.extend(f"shard {name}: {reason}" for name, reason in failed.items())
    if result.interrupted:
        lines.append(
            f"{result.interrupted}: the shards keep only what they committed (the summary "
            "says what); re-running the same command completes the load"
        )
    return [printable(line) for line in lines]


def warning_lines(result: LoadResult) -> list[str]:
    return [printable(warning) for f in result.files for warning in f.warnings]
