"""`pipeline extract` and `to_dataframe`: every shard's residents unioned into one dataset.

The original app chained its two databases in its list endpoint; this is that, done
properly. Rows come shard by shard in shard-map order, each shard ordered by id, so the
output is deterministic; `(shard, id)` is a resident's identity, since ids repeat across
shards by design. Each shard is read in one REPEATABLE READ, READ ONLY transaction: its
part is a consistent snapshot.

Rows stay out of Python where the format allows: CSV is `COPY (SELECT ...) TO STDOUT`
(read by `pipeline.copyout`) written through as bytes; JSON and NDJSON are objects the
server builds; for Parquet and the DataFrame the server packs each column of thousands of
rows into one value (sql/extract/columns.sql), which `pipeline.packed` unpacks into
Arrow arrays.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import pycountry
from psycopg import sql

from pipeline import packed, threads
from pipeline.columnar import preload_arrow, record_batches, to_frame, write_parquet
from pipeline.columns import BY_NAME, FIELDS, PROVENANCE, TEXT_FIELDS
from pipeline.config import Shard, ShardMap, load_shard_map
from pipeline.copyout import Chunk, CopyOut, ReadAhead, Stop
from pipeline.errors import ConfigError, OptionError, PipelineError, ShardError
from pipeline.moves_seen import MovesSeen
from pipeline.output import GuardedStdout, atomic_output
from pipeline.packed import packed_columns
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import EXTRACT
from pipeline.text_output import write_text

# The shard's name, then a record's fields (pipeline.columns), then with --provenance which
# load wrote each row, and when.
COLUMNS = ("shard", *FIELDS)
# The columns a spreadsheet could take for a formula: the text fields and, with
# --provenance, the source (a hand-written row's may hold anything).
TEXT_COLUMNS = (*TEXT_FIELDS, *(n for n in PROVENANCE if BY_NAME[n].pg_type == "text"))
FORMATS = {
    ".csv": "csv",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
}
# A cell starting with one of these is a formula to a spreadsheet; CSV output defuses it
# with a leading ' unless --raw (OWASP's "CSV injection" list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Selection:
    """Which residents: some shards, some countries, or (empty) everyone."""

    shards: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    provenance: bool = False
    allow_partial: bool = False


@dataclass
class ExtractResult:
    rows: int = 0
    shards_read: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # shard -> why (with allow_partial)


def shards_to_read(shard_map: ShardMap, selection: Selection) -> list[Shard]:
    """The shards selected, in map order; unknown names are usage errors.

    Countries do not narrow them: the map says where a country is to be, a shard's residency
    constraint what it may hold now, and after a change of the map the old shard holds the
    country until `pipeline rebalance` has moved it (or forever, for a move it stopped). A
    shard whose constraint refuses every country asked for answers from its plan, without
    reading a row (constraint_exclusion, sql/db/snapshot_settings.sql)."""
    for name in selection.shards:
        try:
            shard_map.shard(name)
        except ConfigError as exc:
            raise OptionError(f"--shard {name}: {exc}") from None
    return [s for s in shard_map.shards if not selection.shards or s.name in selection.shards]


def check_countries(countries: Iterable[str], named: str = "--country") -> tuple[str, ...]:
    """The country codes, upper-cased; OptionError naming the first that is none, as given
    (`named`: the option, or the argument of a library call)."""
    codes = []
    for given in countries:
        code = given.strip().upper()
        if pycountry.countries.get(alpha_2=code) is None:
            raise OptionError(f"{named} {given!r}: not an ISO 3166-1 alpha-2 country code")
        codes.append(code)
    return tuple(codes)


def _select(
    shard: Shard, selection: Selection, statement: str, defuse: bool, with_shard: bool = True
) -> sql.Composed:
    # The columns (pipeline.columns), the filter, the shard's name: each identifiers joined or
    # a literal, composed here and placed in the statement's template.
    where: sql.Composable = sql.SQL("")
    if selection.countries:
        where = sql.SQL("WHERE country = ANY({})").format(sql.Literal(list(selection.countries)))
    chosen = _chosen(selection)
    if statement == "extract_json":
        keys_values = (sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c)) for c in chosen)
        fields = sql.SQL(", ").join(keys_values)
        return EXTRACT.json.format(shard=sql.Literal(shard.name), fields=fields, where=where)
    name: sql.Composable = sql.SQL("")
    if with_shard:
        name = sql.SQL("{} AS shard, ").format(sql.Literal(shard.name))
    fields = sql.SQL(", ").join(_column(c, defuse) for c in chosen)
    return EXTRACT.rows.format(shard_column=name, fields=fields, where=where)


def _chosen(selection: Selection) -> tuple[str, ...]:
    return FIELDS + (PROVENANCE if selection.provenance else ())


def _packed_copy(
    selection: Selection, after: int | None, rows: int, server_encoding: str
) -> sql.Composed:
    """The COPY of extract/columns.sql: the selection's residents after id `after` (None:
    all), packed `rows` a COPY row, for a server of `server_encoding`."""
    chosen = _chosen(selection)
    where: sql.Composable = sql.SQL("")
    if selection.countries:
        where = sql.SQL("AND country = ANY({})").format(sql.Literal(list(selection.countries)))
    resume = sql.SQL("") if after is None else sql.SQL("AND id > {}").format(sql.Literal(after))
    select = EXTRACT.columns.format(
        filter=where,
        after=resume,
        skip=sql.Literal(rows - 1),
        rows=sql.Literal(rows),
        packed=packed_columns(chosen, server_encoding),
        fields=sql.SQL(", ").join(map(sql.Identifier, chosen)),
    )
    return EXTRACT.copy.format(rows=select, format=sql.SQL("binary"))


def _column(name: str, defuse: bool) -> sql.Composable:
    """A column of extract/rows.sql: as stored, or a text column with formulas defused
    (sql/extract/defused.sql says how, and what it costs)."""
    column = sql.Identifier(name)
    if not defuse or name not in TEXT_COLUMNS:
        return column
    starts = sql.SQL(", ").join(sql.Literal(ord(s)) for s in FORMULA_STARTS)
    kind = sql.SQL("bpchar" if BY_NAME[name].pg_type == "character" else "text")
    return EXTRACT.defused.format(column=column, starts=starts, kind=kind)


def shard_streams(
    shard_map: ShardMap,
    selection: Selection,
    statement: str,
    result: ExtractResult,
    *,
    defuse: bool = False,
    with_shard: bool = True,
    spool_dir: str | None = None,
    on_sent: Callable[[], None] | None = None,
) -> Generator[tuple[str, Iterator[Chunk]], None, None]:
    """Each selected shard's rows as a COPY stream of bytes (CSV, one JSON object a line, or
    packed columns in COPY's binary format), shard after shard in map order: (shard name,
    its chunks); read each to its end first. The packed stream's rows are chunks of
    residents: its reader counts them (`result.rows` is left to it).

    Every shard is read at once: the first streams through, the others are read ahead into
    spools (`copyout.ReadAhead`, temporary files in `spool_dir`) and follow in their turn.
    An unreachable or failing shard raises ShardError, unless `selection.allow_partial`:
    then its stream ends early, empty, and it is named in `result.missing`. `on_sent` is
    called (in the reader's thread) as each shard's query goes out.
    """
    formats = {"extract_rows": "csv", "extract_json": "text", "extract_columns": "binary"}
    copy_format = sql.SQL(formats[statement])
    shards = shards_to_read(shard_map, selection)
    counted: dict[str, int] = {}
    unshared = _unshared(shard_map, shards)

    moves = MovesSeen(shard_map, shards, selection.countries)  # no rows read twice

    def read(
        shard: Shard, stop: Stop | None = None, out: threading.Event | None = None
    ) -> Iterator[Chunk]:
        def sent() -> None:  # the query is out: `out` tells the first shard's reader
            if on_sent is not None:
                on_sent()
            if out is not None:
                out.set()

        with moves.snapshot(shard) as conn:
            if statement == "extract_columns":  # its reader counts the residents
                if conn.info.encoding != "utf-8":
                    # The packed text is taken for UTF-8 as it comes (a lone byte FF: NULL).
                    raise ConfigError(
                        f"shard {shard.name}: Parquet and DataFrames need the text as UTF-8;"
                        f" its DSN sets client_encoding to {conn.info.encoding} (leave it out)"
                    )

                encoding = conn.info.parameter_status("server_encoding") or ""

                def packed_copy(after: int | None, rows: int) -> CopyOut:
                    query = _packed_copy(selection, after, rows, encoding)
                    return CopyOut(conn, query, stop, sent)

                id_field = 1 + _chosen(selection).index("id")  # after the count
                yield from packed.resumable(packed_copy, id_field)
                counted[shard.name] = 0
                return
            select = _select(shard, selection, statement, defuse, with_shard)
            statement_sql = EXTRACT.copy.format(rows=select, format=copy_format)
            copy = CopyOut(conn, statement_sql, stop, sent)
            yield from copy
            counted[shard.name] = copy.rows

    def accounted(shard: Shard, chunks: Iterable[Chunk]) -> Generator[Chunk, None, None]:
        sent = False
        try:
            for chunk in chunks:
                if not sent:
                    if unshared is not None:
                        threads.result(unshared)  # ConfigError: two shards are one database
                    if not selection.allow_partial:
                        # Every shard's query is out before a row goes out: one that cannot
                        # be reached fails the extract with nothing written, to stdout too.
                        for spool in later:
                            if (error := spool.failure()) is not None:
                                raise error
                sent = True
                yield chunk
        except ShardError as exc:
            # Leaving a shard out is clean only if none of its rows went out already.
            if not selection.allow_partial or sent:
                raise
            result.missing[shard.name] = exc.reason
            if len(result.missing) == len(shards):
                raise  # every shard left out: that is no extract, whatever --allow-partial says
            return
        finally:
            if isinstance(chunks, Generator):  # a COPY read here, stopped early: cancel it
                chunks.close()
        result.rows += counted[shard.name]
        result.shards_read.append(shard.name)

    later: list[ReadAhead] = []
    current: Generator[Chunk, None, None] | None = None
    try:
        for shard in shards[1:]:
            out = threading.Event()
            later.append(ReadAhead(functools.partial(read, shard, out=out), spool_dir, out))
        streams: list[Iterable[Chunk]] = [read(shards[0]), *later] if shards else []
        for shard, chunks in zip(shards, streams, strict=True):
            current = accounted(shard, chunks)
            yield shard.name, current
    finally:
        moves.close()  # a shard still waiting for the others' ledgers: no more
        if current is not None:  # a reader that stopped inside a shard: its COPY ends now
            current.close()
        for spool in later:  # every COPY cancelled at once, then each waited for
            spool.stop()
        for spool in later:
            spool.close()


def _unshared(shard_map: ShardMap, shards: list[Shard]) -> Future[None] | None:
    """Whether two of `shards` are one database, which would give each of its residents
    twice (pipeline.preflight): asked in a thread, beside the shards' queries, and waited
    for before a shard's first rows go out (ConfigError). None for a single shard."""
    if len(shards) < 2:
        return None
    pool = threads.pool(1, "preflight")
    try:
        return pool.submit(_refuse_shared, shard_map, shards)
    finally:
        pool.shutdown(wait=False)  # its thread ends with the probe


def _refuse_shared(shard_map: ShardMap, shards: list[Shard]) -> None:
    # A shard that fails the probe fails its own query too, which names it (or, with
    # --allow-partial, leaves it out): raised here, its error would be taken for that of
    # whichever shard's rows came first.
    with contextlib.suppress(ShardError):
        refuse_shared_databases(shard_map, shards)


def output_columns(selection: Selection) -> tuple[str, ...]:
    return COLUMNS + (PROVENANCE if selection.provenance else ())


def extract_to(
    shard_map: ShardMap, selection: Selection, fmt: str, out: Path | None, raw: bool = False
) -> ExtractResult:
    """Write the selection to `out` (or stdout) in `fmt`. A file appears only when complete."""
    if fmt == "parquet" and out is None:
        raise OptionError("--format parquet needs -o PATH (it is not a text format)")
    shards_to_read(shard_map, selection)  # an unknown shard name fails before any output
    result = ExtractResult()
    columns = output_columns(selection)
    statements = {"json": "extract_json", "ndjson": "extract_json", "parquet": "extract_columns"}
    statement = statements.get(fmt, "extract_rows")
    # Later shards are spooled beside the output (on its disk, not in a tmpfs /tmp).
    spool_dir = None if out is None else str(out.parent)
    streams = shard_streams(
        shard_map,
        selection,
        statement,
        result,
        defuse=fmt == "csv" and not raw,
        with_shard=fmt != "parquet",
        spool_dir=spool_dir,
        on_sent=preload_arrow if fmt == "parquet" else None,
    )
    # Closed here, not when garbage-collected: a failure stops the other shards' readers now.
    with contextlib.closing(streams):
        if out is None:
            stdout = GuardedStdout()
            write_text(fmt, cast(IO[bytes], stdout), _chained(streams), columns)
            stdout.flush()
            return result
        with atomic_output(out) as tmp:
            if fmt == "parquet":
                result.rows = write_parquet(tmp, record_batches(streams, columns), columns)
            else:
                with open(tmp, "wb") as stream:
                    write_text(fmt, stream, _chained(streams), columns)
    return result


def _chained(streams: Iterable[tuple[str, Iterable[Chunk]]]) -> Iterator[Chunk]:
    for _, chunks in streams:
        yield from chunks


def to_dataframe(
    countries: Iterable[str] = (),
    shards: Iterable[str] = (),
    *,
    config: str | Path | None = None,
    provenance: bool = False,
    allow_partial: bool = False,
) -> Any:
    """Every resident of every shard (or the selected ones) as a pandas DataFrame.

    Same columns, order and filters as `pipeline extract`; nullable pandas dtypes
    (Int64 id, Int16 age, string text). Raises PipelineError subclasses on failure; with
    allow_partial, a shard left out is a UserWarning and in `frame.attrs["missing_shards"]`.

        from pipeline import to_dataframe
        df = to_dataframe(countries=["US"])
    """
    shard_map = load_shard_map(config)
    # One code or name is one, not a sequence of letters.
    countries = [countries] if isinstance(countries, str) else countries
    shards = [shards] if isinstance(shards, str) else shards
    selection = Selection(
        tuple(shards), check_countries(countries, "countries"), provenance, allow_partial
    )
    columns = output_columns(selection)
    result = ExtractResult()
    streams = shard_streams(
        shard_map,
        selection,
        "extract_columns",
        result,
        with_shard=False,
        on_sent=functools.partial(preload_arrow, pandas=True),
    )
    with contextlib.closing(streams):
        frame = to_frame(record_batches(streams, columns), columns)
    frame.attrs["missing_shards"] = result.missing
    for name, reason in result.missing.items():  # a notebook shows it; the CLI prints it
        warnings.warn(f"shard {name} left out (allow_partial): {reason}", stacklevel=2)
    return frame


__all__ = ["ExtractResult", "PipelineError", "Selection", "extract_to", "to_dataframe"]
