"""Running `pipeline check`: residency and the declared checks, per shard
(pipeline.check_shard) and across shards (pipeline.crosscheck) at once, the results sorted
failures first.
"""

from __future__ import annotations

import importlib

from pipeline import threads
from pipeline.check_shard import run_per_shard
from pipeline.checks import CROSS_SHARD, RESIDENCY, CheckResult, CheckSpec, with_residency
from pipeline.config import ShardMap
from pipeline.errors import OptionError
from pipeline.preflight import refuse_shared_databases


def run_all(
    shard_map: ShardMap,
    specs: list[CheckSpec],
    only: tuple[str, ...] = (),
    show_samples: bool = False,
) -> list[CheckResult]:
    """Residency and the declared checks (or those named in `only`, residency still included),
    per shard then across shards; failures first, then in declaration order."""
    unknown = sorted(set(only) - {s.name for s in specs} - {RESIDENCY})
    if unknown:
        names = ", ".join([RESIDENCY, *(s.name for s in specs)])
        raise OptionError(f"--only {unknown[0]}: no such check (the checks: {names})")
    chosen = with_residency([s for s in specs if not only or s.name in only])
    # The cross-shard reads are the longest: numpy, which they need, is imported while the
    # shards are asked who they are, so that those reads start first (a tenth of a second).
    loading = threads.pool(1, "imports")
    if any(spec.kind in CROSS_SHARD for spec in chosen):
        loading.submit(importlib.import_module, "pipeline.crosscheck")
    loading.shutdown(wait=False)
    # Two shards in one database would each fail residency for the other's rows, and the
    # cross-shard checks would find every row twice: the checks cannot run (exit 2).
    refuse_shared_databases(shard_map)
    # The duplicate checks on the same shards share one read of each shard.
    together: dict[tuple[str, ...], list[CheckSpec]] = {}
    for spec in chosen:
        if spec.kind in CROSS_SHARD:
            together.setdefault(spec.shards, []).append(spec)
    across = [*together.values(), *([s] for s in chosen if s.kind in ("ledger", "erasures"))]
    # The checks keep the servers busy, not this process: run them all at once.
    with threads.pool(1 + len(across), "checks") as pool:
        cross = [pool.submit(_run_across, shard_map, specs) for specs in across]
        per_shard = pool.submit(run_per_shard, shard_map, chosen, show_samples)
        results = threads.result(per_shard) + [r for f in cross for r in threads.result(f)]
    order = {s.name: i for i, s in enumerate(chosen)}
    rank = {"fail": 0, "warn": 1, "pass": 2}
    return sorted(results, key=lambda r: (rank[r.status], order[r.name]))


def _run_across(shard_map: ShardMap, specs: list[CheckSpec]) -> list[CheckResult]:
    if specs[0].kind == "erasures":
        from pipeline.erasure_check import run_erasures

        return run_erasures(shard_map, specs[0])
    from pipeline.crosscheck import run_cross_shard  # numpy: see run_all

    return run_cross_shard(shard_map, specs)
