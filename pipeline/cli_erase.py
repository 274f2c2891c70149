"""`pipeline erase`: remove a person from every shard and keep them out (GDPR Art. 17).

Like every command, a thin layer: the options are checked here, the work is pipeline.erase.
What it prints names shards, ids, countries and counts: never the person's fields, not even
those the user typed (the output may end up in a ticket or a log).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipeline.cli_shared import json_option, shard_map_of
from pipeline.rules import TRIM

if TYPE_CHECKING:
    from pipeline.erase import EraseResult

SHOWN_IDS = 20  # ids a shard's line names; --json names them all
MAX_ID = 2**63 - 1


def _targets(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    for text in value:
        shard, _, number = text.rpartition(":")
        if (
            not shard
            or not number.isascii()
            or not number.isdigit()
            or not 0 < int(number) <= MAX_ID
        ):
            raise click.BadParameter(f"{text!r}: expected SHARD:ID, e.g. db_us:21", ctx, param)
    return tuple(dict.fromkeys(value))  # the same resident twice is one


def _reference(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from pipeline.erase import MAX_REFERENCE

    if value is None:
        return None
    value = value.strip(TRIM)
    if not value or len(value) > MAX_REFERENCE or not value.isprintable():
        raise click.BadParameter(
            f"one line of printable text, at most {MAX_REFERENCE} characters", ctx, param
        )
    return value


def _split(target: str) -> tuple[str, str, str]:
    return target.rpartition(":")


@click.command(name="erase")
@click.argument("targets", nargs=-1, callback=_targets)
@click.option("--name", help="Erase every resident of this name (trimmed; A-Z in any case).")
@click.option("--age", type=click.IntRange(0, 150), help="With --name: only of this age.")
@click.option("--address", help="With --name: only at this address (trimmed; A-Z in any case).")
@click.option(
    "--reference",
    callback=_reference,
    help="Why, recorded in the erasure log: a ticket number (no personal data).",
)
@click.option("--yes", is_flag=True, help="Remove them; without it, only show what would go.")
@json_option
@click.pass_context
def erase_command(
    ctx: click.Context,
    targets: tuple[str, ...],
    name: str | None,
    age: int | None,
    address: str | None,
    reference: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Remove a person from every shard, and keep them out of later loads.

    Name residents by SHARD:ID (db_us:21), or a person with --name (and --age, --address):
    every resident they match on every shard. Without --yes, shows what would be removed
    and changes nothing. With --yes, removes them and records the erasure in every shard's
    erasure log (keyed hashes of the matched fields, the time, --reference; no personal
    data in the clear), so that a later load rejects the person (`erased`) and `pipeline
    check` finds them if they come back. Needs the erasure key (PIPELINE_ERASURE_KEY or
    erasure_key_file: in the shard map).

    Exit 0 done, 1 a shard failed (re-running the same command completes it) or a SHARD:ID
    names no resident, 2 usage or configuration (no key).

    Example: pipeline erase --name "Amelia Clarke" --age 29 --reference GDPR-2291 --yes
    """
    from pipeline.erase import Match, Request, Target, erase

    if name is None and (age is not None or address is not None):
        raise click.UsageError("--age and --address go with --name")
    if bool(targets) == (name is not None):
        which = "not both" if targets else "nothing to erase"
        raise click.UsageError(f"name residents as SHARD:ID, or a person with --name; {which}")
    match = None
    if name is not None:
        if not name.strip(TRIM):
            raise click.BadParameter("empty", ctx, param_hint="--name")
        if address is not None and not address.strip(TRIM):
            raise click.BadParameter(
                "empty (leave it out to match any address)", ctx, param_hint="--address"
            )
        match = Match(name, age, address)
    named = tuple(Target(shard, int(number)) for shard, _, number in map(_split, targets))
    request = Request(named, match, reference)
    result = erase(shard_map_of(ctx), request, apply=yes)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print(result)
    for target in result.not_found:
        click.echo(f"Error: {target}: no such resident, and no erasure of it in the log", err=True)
    for shard in result.failed:
        then = "re-running the same command completes it" if shard.transient else ""
        then = then or "fix that, then re-run the same command"
        click.echo(f"Error: {shard.error}; {then}", err=True)
    ctx.exit(result.exit_code)


def _print(result: EraseResult) -> None:
    verb = "removed" if result.applied else "would remove"
    for shard in result.shards.values():
        if shard.error is not None:
            continue
        ids = ", ".join(f"{i} ({c})" for i, c in shard.rows[:SHOWN_IDS])
        more = f" and {len(shard.rows) - SHOWN_IDS} more" if len(shard.rows) > SHOWN_IDS else ""
        line = f"{shard.shard}: {verb} {len(shard.rows)} row(s)" + (f": {ids}{more}" if ids else "")
        if result.applied:
            line += f"; erasure log +{shard.recorded}"
        click.echo(line)
    for target in result.erased_earlier:
        click.echo(f"{target}: erased earlier (in the erasure log)")
    match = result.request.match
    what = f"by {match.level}" if match else "by id"
    if result.withheld:
        click.echo(
            "nothing changed: an erasure must reach every shard's erasure log (a shard whose"
            " log lacks it could take the person back in a load), and a shard did not answer"
        )
    elif not result.applied:
        click.echo(
            f"would record {result.new_entries} erasure(s) ({what}) in every shard's erasure "
            "log; nothing changed: add --yes to remove"
        )
    elif not result.failed:
        reference = f" (reference {result.request.reference})" if result.request.reference else ""
        click.echo(
            f"erased {result.rows} row(s); {result.new_entries} erasure(s) ({what}) recorded "
            f"on every shard{reference}"
        )
