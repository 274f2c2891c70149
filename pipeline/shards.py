"""Working on every shard at once: one step run on each shard in parallel, with a time-out,
and a typed outcome per shard: the step's value, or the error that stopped it there.

"Do this on every shard; one failing does not stop the others" is the shape of `init`,
`status`, `report` and the checks: each runs its step through `on_every_shard` and decides
what a failed shard means for it (`init` goes on with the others, `report` fails unless
told to leave the shard out). Shards run at once, so N unreachable shards cost one connect
time-out, not N. Errors are sorted once, where they are raised (`pipeline.db`): a
ShardError says whether it is transient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline import threads
from pipeline.config import Shard
from pipeline.errors import PipelineError, ShardError

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a step did on one shard: its value, or the error that stopped it."""

    shard: Shard
    value: T | None = None
    error: PipelineError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value; the error raised when there is none."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # a step may return None


def on_every_shard(
    shards: Sequence[Shard],
    step: Callable[[Shard], T],
    timeout: float | None = None,
    pool: ThreadPoolExecutor | None = None,
) -> list[Outcome[T]]:
    """Run `step(shard)` on every shard at once; outcomes in the order of `shards`.

    A PipelineError (a ShardError above all) is that shard's outcome; anything else is a bug
    and raised. A shard whose step is still running after `timeout` seconds is a transient
    ShardError; its thread is left to end by itself (every connection has its own
    time-outs), and no later outcome waits for it. `pool`, when given, runs the steps and is
    left running: a thread a shard, and no `timeout` (a step left running keeps its thread).
    """
    if not shards:
        return []
    # A caller that runs a step once a file passes its own pool: threads started anew each
    # time wait for Python's lock to start (a run of small files spent a seventh of its
    # time there).
    own = pool is None
    pool = threads.pool(len(shards), "shard") if pool is None else pool
    try:
        futures = [pool.submit(step, shard) for shard in shards]
        done = threads.wait_all(futures, timeout)
        outcomes: list[Outcome[T]] = []
        for shard, future in zip(shards, futures, strict=True):
            if future not in done:
                late = ShardError(shard.name, f"no answer within {timeout:g} s", transient=True)
                outcomes.append(Outcome(shard, error=late))
                continue
            try:
                outcomes.append(Outcome(shard, value=future.result()))
            except PipelineError as exc:
                outcomes.append(Outcome(shard, error=exc))
        return outcomes
    finally:
        if own:
            pool.shutdown(wait=False, cancel_futures=True)


def failures(outcomes: Sequence[Outcome[T]]) -> dict[str, PipelineError]:
    """Shard name -> its error, for the shards whose step failed."""
    return {o.shard.name: o.error for o in outcomes if o.error is not None}
