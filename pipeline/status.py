"""`pipeline status`: one look at every shard (reachable, schema version, residents, last
load), and the rebalance moves left copied and not deleted (their rows counted on both)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.errors import ConfigError, PipelineError
from pipeline.moves_seen import Step, half_done, ledger_if_readable
from pipeline.preflight import shared_databases
from pipeline.printable import printable
from pipeline.queries import STATUS
from pipeline.schema import current_version, latest_version
from pipeline.shards import on_every_shard


@dataclass(frozen=True)
class ShardStatus:
    shard: str
    dsn: str  # redacted
    reachable: bool
    error: str | None
    schema_version: int | None
    latest_version: int
    residents: int | None
    last_load_at: datetime | None
    last_load_file: str | None
    same_database_as: str | None = None  # an earlier shard that is this very database
    # Moves from this shard whose copy the target committed and whose delete this shard did
    # not: the rows are counted here and there (`pipeline rebalance` finishes them).
    unfinished_moves: tuple[Step, ...] = ()
    # Read to find the above; None: the role may not read it (moves not checked).
    ledger: tuple[Step, ...] | None = field(default=(), repr=False)
    # The error is the shard map's (a DSN libpq refuses), not the shard's.
    config_error: bool = field(default=False, repr=False)

    @property
    def misconfigured(self) -> bool:
        return self.same_database_as is not None or self.config_error

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["ledger"], data["config_error"]
        data["unfinished_moves"] = [
            {"move_id": m.move_id, "country": m.country, "to": m.target, "rows": m.rows}
            for m in self.unfinished_moves
        ]
        data["last_load_at"] = self.last_load_at.isoformat() if self.last_load_at else None
        return data


def shard_status(shard_map: ShardMap, shard: Shard) -> ShardStatus:
    version: int | None = None
    residents: int | None = None
    last_at: datetime | None = None
    last_file: str | None = None
    error: str | None = None
    config_error = False
    ledger: list[Step] | None = []
    try:
        with db.connect(shard_map, shard) as conn:
            version = current_version(conn)
            ledger = ledger_if_readable(conn, version)
            if version >= latest_version():
                row = conn.execute(STATUS.shard).fetchone()
                if row is not None:
                    residents, last_at, last_file = int(row[0]), row[1], row[2]
    except PipelineError as exc:
        error = getattr(exc, "reason", str(exc))
        config_error = isinstance(exc, ConfigError)
    return ShardStatus(
        shard=shard.name,
        dsn=db.display_dsn(shard),
        reachable=error is None,
        error=error,
        schema_version=version,
        latest_version=latest_version(),
        residents=residents,
        last_load_at=last_at,
        last_load_file=last_file,
        ledger=None if ledger is None else tuple(ledger),
        config_error=config_error,
    )


def all_status(shard_map: ShardMap) -> list[ShardStatus]:
    # Every shard at once: N unreachable shards cost one connect time-out, not N. Then the
    # shards that answered are asked whether two of them are one database (the probe would
    # pay the time-out of an unreachable shard a second time).
    outcomes = on_every_shard(shard_map.shards, lambda shard: shard_status(shard_map, shard))
    statuses = [outcome.unwrap() for outcome in outcomes]
    reachable = [shard for shard, s in zip(shard_map.shards, statuses, strict=True) if s.reachable]
    try:
        shared = shared_databases(shard_map, reachable)
    except PipelineError:
        shared = {}  # a shard that answered a moment ago and fails now: its line says so
    # The shards are read at once, each at its own moment and in its own transaction: a
    # move seen deleted and not copied committed between two reads, not left half-way (and
    # one seen copied and not deleted may be a running rebalance's: the line says so).
    ledgers = {s.shard: s.ledger for s in statuses if s.reachable and s.ledger is not None}
    unfinished = [move for move, copied in half_done(ledgers) if copied]
    return [
        replace(
            s,
            same_database_as=shared.get(s.shard),
            unfinished_moves=tuple(m for m in unfinished if m.source == s.shard),
        )
        for s in statuses
    ]


def format_line(status: ShardStatus) -> str:
    """One line of `pipeline status`."""
    if not status.reachable:
        return f"{status.shard}  {status.dsn}  {status.error}"
    if status.same_database_as is not None:
        return (
            f"{status.shard}  {status.dsn}  the same database as shard "
            f"{status.same_database_as}: fix the shard map (init, load and check refuse it)"
        )
    version = f"schema {status.schema_version}/{status.latest_version}"
    if status.schema_version != status.latest_version:
        return f"{status.shard}  {status.dsn}  reachable  {version} (run `pipeline init`)"
    last = "no loads yet"
    if status.last_load_at is not None:
        file = printable(status.last_load_file or "")  # a file name may hold a newline, an ESC
        last = f"last load {status.last_load_at:%Y-%m-%d %H:%M:%S%z} {file}"
    residents = f"{status.residents} residents"
    line = f"{status.shard}  {status.dsn}  reachable  {version}  {residents}  {last}"
    for m in status.unfinished_moves:
        line += (
            f"\n  unfinished move {m.move_id[:8]}: the {m.rows} row(s) of {m.country} copied to"
            f" {m.target} and not deleted here, counted on both; if no rebalance is running,"
            " run `pipeline rebalance` to finish it"
        )
    return line
