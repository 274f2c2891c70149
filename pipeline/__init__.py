"""resident-pipeline: route resident records by country into regional PostgreSQL shards.

The command line is `pipeline` (see `pipeline.cli`); the library modules follow the
data: `config` (the shard map), `db` and `embedded` (connections), `schema` (init),
`status`, `extract` (and `to_dataframe`, for notebooks).
"""

from __future__ import annotations

# typing is not imported here: every command imports this package before its entry point
# (pipeline.entry) can catch a Ctrl-C, and typing took 9 ms of that. Type checkers take any
# name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"
__all__ = ["to_dataframe"]


def __getattr__(name: str) -> Any:
    # `from pipeline import to_dataframe` loads the extract module (and psycopg) on first
    # use, not every time any pipeline module is imported (`pipeline --help` stays quick).
    if name == "to_dataframe":
        from pipeline.extract import to_dataframe

        return to_dataframe
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
