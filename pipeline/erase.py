"""`pipeline erase`: remove a person from every shard, and record it in every shard's
erasure log so that no later load brings them back (pipeline.erased) and `pipeline check`
finds them if they come back by another way (pipeline.erasure_check).

A request names residents by SHARD:ID, or a person by match (name, and age and address when
given; normalised as pipeline.erasure_key says). In two steps:
1. read, on every shard at once: its erasure log, and the residents the request names (by
   id on their shard) or matches (the hash computed by the server, sql/erase/person.sql);
2. with `apply` (the command's --yes), once every shard answered step 1 (else nothing
   changes: a shard whose log lacked the erasure could take the person back in a load
   while the shards holding it are down), on every shard at once, in one transaction
   each: wait for the load lock (a load's file in progress on the shard ends first),
   delete the residents, and record the erasure in the log, with every erasure
   another shard's log holds and this one lacks. An erasure is the same row on every shard,
   keyed by its hashes, and recorded once (ON CONFLICT DO NOTHING).
A shard that fails rolls its own part back and the others commit: the result names it
(exit 1), and running the same command again completes it: the rows are gone where they
were removed, the erasures found in the other shards' logs are recorded on it, and an
erasure by SHARD:ID whose row an earlier run removed is known by its hash (`erased_earlier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import sql

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.erasure_key import ErasureKey, level_of, require_key
from pipeline.errors import EXIT_DATA, EXIT_OK, ConfigError, OptionError, PipelineError, ShardError
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import ERASE, SCHEMA
from pipeline.shards import on_every_shard
from pipeline.sqlfiles import Template

LOCK_TIMEOUT = "600s"  # as long as a load waits for another load's lock (its default)
MAX_REFERENCE = 200  # characters: a ticket number, not a story


@dataclass(frozen=True)
class Target:
    """A resident named by shard and id."""

    shard: str
    id: int

    def __str__(self) -> str:
        return f"{self.shard}:{self.id}"


@dataclass(frozen=True)
class Match:
    """A person named by their fields: every resident whose name (and age, and address,
    when given) match, normalised, on every shard."""

    name: str
    age: int | None = None
    address: str | None = None

    @property
    def level(self) -> str:
        return level_of(self.age is not None, self.address is not None)


@dataclass(frozen=True)
class Request:
    targets: tuple[Target, ...] = ()
    match: Match | None = None
    reference: str | None = None


@dataclass(frozen=True)
class Entry:
    """One row of erasure_log (sql/migrations/0008_erasure_log.sql)."""

    person_hash: bytes
    target_hash: bytes
    fields: str
    name_hash: bytes
    key_id: bytes
    reference: str | None
    erased_at: datetime

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.person_hash, self.target_hash)

    def row(self) -> tuple[Any, ...]:
        return (self.person_hash, self.target_hash, self.fields, self.name_hash, self.key_id,
                self.reference, self.erased_at)  # fmt: skip


@dataclass
class ShardErasure:
    """What the erase found (and, applied, removed and recorded) on one shard."""

    shard: str
    rows: list[tuple[int, str]] = field(default_factory=list)  # (id, country)
    recorded: int = 0  # erasures this run wrote into the shard's log
    error: str | None = None
    transient: bool = True  # the error may pass: re-running the same command completes it

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": [{"id": i, "country": c} for i, c in self.rows],
            "recorded": self.recorded,
            "error": self.error,
        }


@dataclass
class EraseResult:
    applied: bool
    request: Request
    shards: dict[str, ShardErasure]
    new_entries: int = 0  # erasures this request adds to the log (0: all recorded before)
    not_found: list[str] = field(default_factory=list)  # SHARD:ID with no row and no erasure
    erased_earlier: list[str] = field(default_factory=list)  # SHARD:ID an earlier run removed
    # Asked to apply, and did not: a shard did not answer the first step (see `erase`).
    withheld: bool = False

    @property
    def rows(self) -> int:
        return sum(len(s.rows) for s in self.shards.values())

    @property
    def failed(self) -> list[ShardErasure]:
        return [s for s in self.shards.values() if s.error is not None]

    @property
    def exit_code(self) -> int:
        return EXIT_DATA if self.failed or self.not_found else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        match = self.request.match
        return {
            "applied": self.applied,
            "targets": [str(t) for t in self.request.targets],
            "fields": match.level if match else None,
            "reference": self.request.reference,
            "rows": self.rows,
            "new_erasures": self.new_entries,
            "shards": {name: s.to_json() for name, s in self.shards.items()},
            "not_found": self.not_found,
            "erased_earlier": self.erased_earlier,
            "withheld": self.withheld,
        }


@dataclass
class _Found:
    """Step 1 on one shard: its log, and the residents the request names there."""

    log: list[Entry]
    rows: list[tuple[Any, ...]]  # by id: (id, country, name, age, address); by match: (id, country)


def erase(shard_map: ShardMap, request: Request, apply: bool = False) -> EraseResult:
    """Find the residents `request` names on every shard and, with `apply`, remove them and
    record the erasure in every shard's log (see the module docstring)."""
    key = require_key(shard_map, "pipeline erase")
    for target in request.targets:
        try:
            shard_map.shard(target.shard)
        except ConfigError as exc:  # a shard the map does not have: a usage error, exit 2
            raise OptionError(f"{target.shard}:{target.id}: {exc}") from None
    refuse_shared_databases(shard_map)
    result = EraseResult(apply, request, {s.name: ShardErasure(s.name) for s in shard_map.shards})
    found: dict[str, _Found] = {}
    for outcome in on_every_shard(shard_map.shards, lambda s: _find(shard_map, s, request, key)):
        if outcome.error is not None:
            if isinstance(outcome.error, ConfigError):
                raise outcome.error
            _failed(result.shards[outcome.shard.name], outcome.error)
        else:
            found[outcome.shard.name] = outcome.unwrap()
    known = {e.key: e for f in found.values() for e in f.log}
    _refuse_other_keys(known.values(), key)
    erased_at = datetime.now(timezone.utc)
    entries, expected = _entries(request, key, found, known, erased_at, result)
    result.new_entries = sum(1 for e in entries if e.key not in known)
    if apply and result.failed:
        # Every shard's log must record the erasure: a load reads the logs of the shards
        # that answer it, and one lacking the erasure, while the shards holding it are
        # down, would take the person back. So nothing is removed until every shard answers.
        apply = result.applied = False
        result.withheld = True
    if not apply:
        for name, f in found.items():
            result.shards[name].rows = [(int(r[0]), str(r[1])) for r in f.rows]
        return result
    # An erasure another shard recorded first keeps its time and reference everywhere.
    every = list({**{e.key: e for e in entries}, **known}.values())
    answered = [s for s in shard_map.shards if s.name in found]

    def write(shard: Shard) -> ShardErasure:
        held = {e.key for e in found[shard.name].log}
        lacking = [e for e in every if e.key not in held]  # what this shard's log lacks
        return _apply(shard_map, shard, request, key, lacking, expected.get(shard.name, {}))

    for written in on_every_shard(answered, write):
        if written.error is not None:
            _failed(result.shards[written.shard.name], written.error)
        else:
            result.shards[written.shard.name] = written.unwrap()
    return result


def _failed(shard: ShardErasure, error: PipelineError) -> None:
    shard.error = str(error)
    shard.transient = isinstance(error, ShardError) and error.transient


def _find(shard_map: ShardMap, shard: Shard, request: Request, key: ErasureKey) -> _Found:
    ids = [t.id for t in request.targets if t.shard == shard.name]
    with db.snapshot(shard_map, shard) as conn:
        log = read_log(conn, shard)
        rows: list[tuple[Any, ...]] = []
        if ids:
            rows = conn.execute(ERASE.rows, [ids]).fetchall()
        if request.match is not None:
            statement, params = _matching(ERASE.matching, request.match, key)
            rows = conn.execute(statement, params).fetchall()
    return _Found(log, rows)


def read_log(conn: psycopg.Connection[Any], shard: Shard) -> list[Entry]:
    """A shard's erasure log; a role that may not read it is a ConfigError (exit 2): a
    command that cannot read it cannot keep erased persons out."""
    try:
        with conn.transaction():
            return [Entry(*row) for row in conn.execute(ERASE.log)]
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError(
            f"shard {shard.name}: this role may not read erasure_log; run `pipeline init "
            "--roles` (it grants pipeline_loader and pipeline_analyst SELECT on it)"
        ) from None


def share_logs(
    shard_map: ShardMap, shards: Sequence[Shard], also_read: Sequence[Shard] = ()
) -> tuple[dict[str, int], list[PipelineError]]:
    """Record on each of `shards` the erasures another one's log holds and its own lacks:
    a shard added to the map starts with an empty log, which `pipeline check` fails until
    an erase records them there (`pipeline init` calls this). The logs of `also_read` (the
    shards init could not bring up to date: their logs may hold erasures no other has) are
    read too, where they can be; their errors are their init's to report. Copies hashes
    only: no key is needed. Returns how many were recorded on each shard that lacked some,
    and the errors of `shards` that could not be read (left out) or written (rolled back)."""

    def read(shard: Shard) -> list[Entry]:
        with db.connect(shard_map, shard, autocommit=True) as conn:
            return read_log(conn, shard)

    errors: list[PipelineError] = []
    logs = {}
    writable = {s.name for s in shards}
    for outcome in on_every_shard([*shards, *also_read], read):
        if outcome.error is not None:
            if outcome.shard.name in writable:
                errors.append(outcome.error)
        else:
            logs[outcome.shard.name] = outcome.unwrap()
    every = {e.key: e for log in logs.values() for e in log}

    def record(shard: Shard) -> int:
        held = {e.key for e in logs[shard.name]}
        lacking = [e for k, e in every.items() if k not in held]
        if not lacking:
            return 0
        with db.connect(shard_map, shard) as conn, conn.transaction(), conn.cursor() as cursor:
            conn.execute(ERASE.lock_timeout, [LOCK_TIMEOUT])
            conn.execute(SCHEMA.lock, [db.LOCK_LOAD])  # as an erase records: after a load's file
            recorded = 0
            for entry in lacking:
                cursor.execute(ERASE.record, entry.row())
                recorded += cursor.rowcount
        return recorded

    counts: dict[str, int] = {}
    for written in on_every_shard([s for s in shards if s.name in logs], record):
        if written.error is not None:
            errors.append(written.error)
        elif written.value:
            counts[written.shard.name] = written.value
    return counts, errors


def _refuse_other_keys(entries: Any, key: ErasureKey) -> None:
    others = sum(1 for e in entries if bytes(e.key_id) != key.key_id)
    if others:
        raise ConfigError(
            f"the erasure log holds {others} erasure(s) made with another erasure key: with"
            " this one they match nobody; set the key they were made with"
        )


def _matching(
    template: Template, match: Match, key: ErasureKey
) -> tuple[sql.Composed, dict[str, Any]]:
    person = ERASE.person.format(fields=sql.Literal(match.level), row=sql.Identifier("r"))
    params = {
        **key.pads(),
        "hash": key.person_hash(match.level, match.name, match.age, match.address),
    }
    return template.format(person=person), params


def _entries(
    request: Request,
    key: ErasureKey,
    found: dict[str, _Found],
    known: dict[tuple[bytes, bytes], Entry],
    erased_at: datetime,
    result: EraseResult,
) -> tuple[list[Entry], dict[str, dict[int, bytes]]]:
    """The erasures this request records, and, by shard and id, the person hash of each
    resident named by SHARD:ID (its row must still hash so when it is deleted)."""
    entries: list[Entry] = []
    expected: dict[str, dict[int, bytes]] = {}

    def entry(level: str, name: str, person_hash: bytes, target_hash: bytes = b"") -> Entry:
        return Entry(person_hash, target_hash, level, key.name_hash(name), key.key_id,
                     request.reference, erased_at)  # fmt: skip

    match = request.match
    if match is not None:
        person_hash = key.person_hash(match.level, match.name, match.age, match.address)
        entries.append(entry(match.level, match.name, person_hash))
    earlier = {bytes(e.target_hash) for e in known.values()}
    level = "name+age+address"  # a removed row is recorded as it was
    for target in request.targets:
        target_hash = key.target_hash(target.shard, target.id)
        rows = found.get(target.shard)
        row = next((r for r in rows.rows if r[0] == target.id), None) if rows else None
        if row is not None:
            _, _, name, age, address = row
            person_hash = key.person_hash(level, name, age, address)
            entries.append(entry(level, name, person_hash, target_hash))
            expected.setdefault(target.shard, {})[target.id] = person_hash
        elif target_hash in earlier:
            result.erased_earlier.append(str(target))
        elif rows is not None:  # the shard answered: no such resident
            result.not_found.append(str(target))
    return entries, expected


def _apply(
    shard_map: ShardMap,
    shard: Shard,
    request: Request,
    key: ErasureKey,
    entries: Sequence[Entry],
    expected: dict[int, bytes],
) -> ShardErasure:
    """Step 2 on one shard, in one transaction: delete, then record every erasure."""
    done = ShardErasure(shard.name)
    with db.connect(shard_map, shard) as conn, conn.transaction():
        conn.execute(ERASE.lock_timeout, [LOCK_TIMEOUT])
        conn.execute(SCHEMA.lock, [db.LOCK_LOAD])
        if expected:
            for row in conn.execute(ERASE.delete_ids, [list(expected)]).fetchall():
                resident_id, country, name, age, address = row
                if key.person_hash("name+age+address", name, age, address) != expected[resident_id]:
                    # Changed since step 1 (a load updated it): the log would record other
                    # fields than those removed. Leaving the block rolls the shard back.
                    raise ShardError(
                        shard.name,
                        f"resident {resident_id} changed while it was being erased; nothing "
                        "was removed here: re-running the same command completes it",
                        transient=True,
                    )
                done.rows.append((int(resident_id), str(country)))
        if request.match is not None:
            statement, params = _matching(ERASE.delete_matching, request.match, key)
            done.rows.extend((int(i), str(c)) for i, c in conn.execute(statement, params))
        with conn.cursor() as cursor:
            for entry in entries:
                cursor.execute(ERASE.record, entry.row())
                done.recorded += cursor.rowcount
    done.rows.sort()
    return done
