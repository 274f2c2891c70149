"""`pipeline load`: read files, route each record by country, load every shard once per file.

For each file, in order:
1. hash it (sha256 of its bytes; the run's files are hashed in a thread from its start,
   pipeline.incoming), and open a transaction on every shard (`ShardWriter.begin`),
   in shard-map order so two loads lock shards in the same order and cannot deadlock;
   a shard whose ledger already holds the file skips it (but see sync.last_of_source);
2. read its records in batches and apply the rules to them (pipeline.dispatch): refused
   records go to the rejects file, the valid ones to their shard's writer (new ids straight
   into residents, the others through staging: pipeline.shard_rows); when a shard meets an
   id twice on the direct path, or a bulk reader (CSV, NDJSON) cannot take the file, every shard
   goes back to the file's start and the file is read again (`Restart`, `NotSimple`);
3. find the ids each shard got twice; if the file's rejects exceed its budget, roll every
   shard back: nothing of the file is loaded;
4. a snapshot (pipeline.sync) deletes its source's rows the file does not give, on every
   shard; if that is more than --max-deletes allows on any shard, roll every shard back;
5. otherwise commit each shard (upsert + ledger row); a shard that fails does not stop the
   others, and re-running the same command completes it (the ledger skips the rest).

Files apply in the order given: a later file wins. So a shard that fails a file takes no
later file in the run, and a re-run that completes a file on a shard where a later file of
the command already landed leaves that later file's rows alone (writer.py: "kept").

A load can be interrupted (`Interrupt`; the CLI's SIGINT and SIGTERM): the statements the
shards are running are cancelled, every shard that has not committed the current file rolls
it back, no later file starts, and the result says exactly what committed.
A rejects file or a temporary spool that cannot be written (a full disk) stops the load
the same way.

Every record ends up loaded, rejected (written to the rejects file with a reason) or, when
its shard failed, pending: `rows_read = rows_loaded + rows_rejected + rows_pending`, and
pending is 0 unless the run exits 1 naming the shard.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipeline import sources, threads
from pipeline.config import ShardMap
from pipeline.dispatch import Dispatch, Restart
from pipeline.erased import Erased, read_erasures
from pipeline.errors import OUT_OF_MEMORY, LocalFileError, ShardError, exhausted
from pipeline.incoming import FileHashes
from pipeline.interrupt import Interrupt, Interrupted
from pipeline.load_options import LoadOptions
from pipeline.load_result import FileResult, LoadResult, Progress
from pipeline.reasons import RejectReason
from pipeline.refusals import shard_refusals
from pipeline.rejects import Reject, RejectWriter
from pipeline.rules import Rules
from pipeline.schema import arrivals
from pipeline.shard_rows import Conflict
from pipeline.shards import on_every_shard
from pipeline.source_arrow import NotSimple
from pipeline.sources import SourceError, open_source, source_format
from pipeline.sync import last_of_source, source_for
from pipeline.writer import ShardWriter


def load(
    shard_map: ShardMap,
    rules: Rules,
    files: list[Path],
    options: LoadOptions | None = None,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    hashes: FileHashes | None = None,
) -> LoadResult:
    """Load `files` into the shards of `shard_map`; see the module docstring for the guarantees.
    Calling `interrupt` (from a signal handler or a thread) stops it early. `hashes`: the
    files' hashing, when the caller started it (pipeline.incoming); else it starts here."""
    hashes = FileHashes(files) if hashes is None else hashes
    options = options or LoadOptions()
    interrupt = interrupt or Interrupt()
    load_id = str(uuid.uuid4())
    started = datetime.now().astimezone()
    rejects = RejectWriter(options.rejects_dir, load_id, started, enabled=not options.dry_run)
    rejects.prepare()  # a folder that cannot be made is a usage error, before anything is written
    writers = {
        s.name: ShardWriter(shard_map, s, rules, load_id, options.dry_run, options.timeouts)
        for s in shard_map.shards
    }
    erasures = read_erasures(shard_map, options.timeouts.connect)  # once, before any file
    pool = threads.pool(len(writers), "shard")  # the steps each file runs on every shard
    run = _Run(
        shard_map, rules, writers, rejects, options, progress, interrupt, hashes, pool, erasures
    )
    done = threading.Event()
    canceller = threads.start(
        interrupt.cancel_when_asked, list(writers.values()), done, name="canceller"
    )
    results: list[FileResult] = []
    try:
        for i, path in enumerate(files):
            if interrupt.reason is not None:
                break
            results.append(run.load_file(path, i))
    finally:
        hashes.close()
        pool.shutdown(wait=False)  # no step runs: each file waits for its own
        done.set()
        interrupt._wake.set()  # lets the canceller end; it cancels nothing once done is set
        canceller.join()
        for writer in writers.values():
            writer.close()
        rejects.close()
    return LoadResult(
        load_id,
        options.dry_run,
        results,
        list(writers),
        rejects.written,
        interrupt.reason,
        [str(p) for p in files[len(results) :]],
    )


@dataclass
class _Run:
    """One `load` call: the shard writers, the rejects file and the options, file after file."""

    shard_map: ShardMap
    rules: Rules
    writers: dict[str, ShardWriter]
    rejects: RejectWriter
    options: LoadOptions
    progress: Progress | None
    interrupt: Interrupt
    hashes: FileHashes
    pool: ThreadPoolExecutor  # for the steps each file runs on every shard at once
    erased: Erased = field(default_factory=Erased)  # to keep out: pipeline.erased

    def __post_init__(self) -> None:
        self.dispatch = Dispatch(
            self.shard_map, self.rules, self.rejects, self.interrupt, self.progress,
            self._shard_failed, self.erased,
        )  # fmt: skip

    def load_file(self, path: Path, index: int) -> FileResult:
        result = FileResult(str(path), source_format(path) or "?")
        result.source = source_for(path, self.options.source, self.shard_map.sources)
        try:
            options = self.options
            rules = self.rules
            source = open_source(
                path, options.encoding, rules.limits, options.bulk_read, rules.op_column
            )
            result.format = source.label
            sha256 = source.sha256 = self.hashes.at_turn(path)
        except (SourceError, OSError) as exc:
            result.error = f"{path}: {exc}"
            return result
        started = datetime.now().astimezone()
        active = self._begin(result, sha256, index)
        if not active and not result.shard_errors:
            result.skipped = True  # every shard's ledger already holds this file
            return result
        if self._stopped():
            self._interrupt_file(result, active, 0)
            return result
        mark = self.rejects.mark()
        try:
            self._load_rows(result, source, active, mark, started)
        except Exception as exc:
            if not (isinstance(exc, LocalFileError) or exhausted(exc)):
                raise
            self._stop_run(result, active, mark, exc)  # nothing more can load
        return result

    def _load_rows(
        self,
        result: FileResult,
        source: sources.Source,
        active: dict[str, ShardWriter],
        mark: tuple[int, int | None],
        started: datetime,
    ) -> None:
        """Read the file's records into its shards, then commit it (see load_file)."""
        path, sha256 = Path(result.path), source.sha256
        direct = dict.fromkeys(active, True)
        while True:
            try:
                encodings = {name: w.server_encoding for name, w in self.writers.items()}
                taken = {name: w.renumbered for name, w in active.items()}
                early_rejects = self.dispatch.send(source, result, active, encodings, taken)
                self._read(result)
                if source.unknown_columns:
                    names = ", ".join(sorted(source.unknown_columns))
                    result.warnings.append(f"{path}: ignored unknown column(s): {names}")
                self._in_parallel(result, active, lambda writer: writer.check())
                break
            except (Restart, NotSimple) as again:
                # Read the file again from its start: the shards that met a conflict take
                # their rows through staging, a file the bulk reader cannot take is
                # read by Python's.
                if isinstance(again, Restart):
                    direct.update(dict.fromkeys(again.shards, False))
                arrow = source.arrow and not isinstance(again, NotSimple)
                self.rejects.rewind(mark)
                self._restart(result, active, direct)
                source = open_source(
                    path, self.options.encoding, self.rules.limits, arrow, self.rules.op_column
                )
                source.sha256 = sha256
            except Interrupted as stop:
                self._read(result)
                self._interrupt_file(result, active, stop.rejected)
                return
            except SourceError as exc:
                self._read(result)
                where = f" (after record {result.rows_read})" if result.rows_read else ""
                self._abandon_file(result, active, f"{path}: {exc}{where}")
                return
        rejected = early_rejects + result.refused_elsewhere
        rejected += sum(w.counts.rejected for w in active.values())
        # Written before COMMIT: the staged rows they come from go with the transaction.
        self._write_refused(result, active)
        if self._stopped():
            self._interrupt_file(result, active, early_rejects)
            return
        budget = self.options.max_rejects
        if budget.exceeded(rejected, result.rows_read):
            self._abandon_file(
                result,
                active,
                f"{path}: {rejected} of {result.rows_read} records failed the checks, over the "
                f"budget of {budget} (--max-rejects): the whole file is rejected, nothing of it "
                "was loaded",
            )
            return
        if result.source is not None and result.source.snapshot:
            refused_ids = self.dispatch.refused_id_array()
            with_ids = self.options.dry_run
            budget = self.options.max_deletes
            self._in_parallel(
                result, active, lambda writer: writer.sweep(refused_ids, with_ids, budget)
            )
            over = result.too_many_deletes(budget)
            if over is not None:
                self._abandon_file(result, active, f"{path}: {over}")
                return
        self.rejects.sync()  # the rejects are on disk before the rows they explain are committed
        ledger = {"source_file": str(path), "sha256": sha256, "forced": self.options.force,
                  "started_at": started}  # fmt: skip
        # An interruption now cancels the shards' upserts: those that commit first are loaded,
        # the others roll back (each shard's outcome is the server's answer to its COMMIT).
        try:
            self._in_parallel(result, active, lambda writer: writer.commit(ledger))
        except Exception as exc:  # out of memory as the shards commit: those that did keep it
            if not exhausted(exc):
                raise
            self.interrupt.stop(OUT_OF_MEMORY)
            uncommitted = {name: w for name, w in active.items() if not w.committed}
            self._interrupt_file(result, uncommitted, early_rejects)
            return
        result.interrupted = self._interrupted_reason() in result.shard_errors.values()
        result.account(early_rejects, self.options.force)

    def _read(self, result: FileResult) -> None:
        """Tell the progress callback the file has been read."""
        if self.progress:
            self.progress(result, result.rows_read, True)

    def _begin(self, result: FileResult, sha256: str, index: int) -> dict[str, ShardWriter]:
        """Open the file's transaction on every shard, in shard-map order (the lock order);
        ShardWriter.begin says what the later files' hashes and `last` are for."""
        later, files = self.hashes.readable_after(index), self.hashes.files[index + 1 :]
        last = last_of_source(result.source, files, self.options.source, self.shard_map.sources)
        active: dict[str, ShardWriter] = {}
        for name, writer in self.writers.items():
            try:
                if writer.begin(sha256, self.options.force, later, result.source, last):
                    active[name] = writer
            except ShardError as exc:
                self._shard_failed(result, name, exc)
            result.shards[name] = writer.counts
        # Every shard's rule was read under its lock: none takes a country still on another.
        found = {name: writer.found_rule for name, writer in self.writers.items()}
        for name, reason in arrivals(self.shard_map, found).items():
            if name in active:
                active.pop(name).rollback()
                self._shard_failed(result, name, ShardError(name, reason))
        return active

    def _shard_failed(self, result: FileResult, name: str, error: ShardError) -> None:
        """Record a shard's failure on this file, and keep it out of the rest of the run: a
        later file must not land on it before this one does (re-running loads both, in order)."""
        reason = error.reason
        if self._stopped():
            reason = self._interrupted_reason()  # not the server's "canceling statement"
        result.shard_errors.setdefault(name, reason)
        self.writers[name].hold(
            f"not loaded: this shard failed on {result.path} earlier in this run, and a later "
            "file must not land before that one; re-running the same command loads both, in order"
        )

    def _stopped(self) -> bool:
        """Whether the load is interrupted (a method: the answer changes under mypy's feet)."""
        return self.interrupt.reason is not None

    def _interrupted_reason(self) -> str:
        return f"{self.interrupt.reason} before it committed this file: rolled back"

    def _interrupt_file(
        self, result: FileResult, active: dict[str, ShardWriter], early_rejects: int
    ) -> None:
        """Roll the file back on every shard that has not committed it; its rows are pending."""
        for name, writer in active.items():
            writer.rollback()
            result.shard_errors.setdefault(name, self._interrupted_reason())
        result.interrupted = True
        result.account(early_rejects, self.options.force)

    def _stop_run(
        self,
        result: FileResult,
        active: dict[str, ShardWriter],
        mark: tuple[int, int | None],
        error: Exception,
    ) -> None:
        """The rejects file or a spool cannot be written (a full disk), or memory ran out:
        nothing more may load. The run stops as an interrupted one does, for `error`: the
        file rolls back on every shard (none has committed it: the spools are copied and the
        rejects synced first; commit's own step is _load_rows'), no later file starts, the
        summary says what the earlier files committed. What the rejects file got of this
        file is cut off (a failed write may have left half a line): its records are pending."""
        self.interrupt.stop(OUT_OF_MEMORY if exhausted(error) else str(error))
        self._read(result)
        # Counted anew (a file refused as a whole was counted so: FileResult.refuse).
        result.rows_loaded = result.rows_rejected = result.rows_pending = 0
        self._interrupt_file(result, active, 0)
        with contextlib.suppress(LocalFileError):  # the run's error says why already
            self.rejects.rewind(mark)
        result.error = None  # refused as a whole, but that is not on record: re-run, it is
        result.rows_pending = result.rows_read - result.rows_loaded - result.rows_rejected

    def _restart(
        self, result: FileResult, active: dict[str, ShardWriter], direct: dict[str, bool]
    ) -> None:
        """Undo what the file sent to every shard, to read it again (see load_file)."""
        result.rows_read = result.refused_elsewhere = 0
        for counts in result.shards.values():
            counts.staged = counts.rejected = 0
        for name, writer in list(active.items()):
            try:
                writer.restart(direct[name])
            except ShardError as exc:
                self._shard_failed(result, name, exc)
                del active[name]
            result.shards[name] = writer.counts

    def _in_parallel(
        self,
        result: FileResult,
        active: dict[str, ShardWriter],
        step: Callable[[ShardWriter], object],
    ) -> None:
        """Run `step` on every active shard at once; a shard that fails leaves `active`."""
        shards = [writer.shard for writer in active.values()]
        conflicts = []
        outcomes = on_every_shard(shards, lambda shard: step(active[shard.name]), pool=self.pool)
        for outcome in outcomes:
            if (error := outcome.error) is None:
                continue
            if isinstance(error, Conflict):
                conflicts.append(outcome.shard.name)
                continue
            if not isinstance(error, ShardError):
                raise error  # not a shard's failure: the run's (the rejects file, say)
            self._shard_failed(result, outcome.shard.name, error)
            del active[outcome.shard.name]
        if conflicts:
            raise Restart(conflicts)

    def _write_refused(self, result: FileResult, active: dict[str, ShardWriter]) -> None:
        for name, writer in list(active.items()):
            try:
                for rejects in shard_refusals(result.path, name, writer.refused(), self.rules):
                    self.rejects.write_all(rejects)
            except ShardError as exc:
                self._shard_failed(result, name, exc)
                del active[name]

    def _abandon_file(self, result: FileResult, active: dict[str, ShardWriter], error: str) -> None:
        """Roll the file back everywhere: it is rejected as a whole."""
        for writer in active.values():
            writer.rollback()
            counts = writer.counts  # a refused snapshot deletes nothing: no ids either
            counts.deleted, counts.deleted_by_country, counts.deleted_ids = 0, {}, None
        error, reason = result.refuse(error), RejectReason.FILE_REJECTED
        self.rejects.write(Reject(result.path, None, None, reason, error, None))
