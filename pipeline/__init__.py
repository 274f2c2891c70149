"""resident-pipeline: route resident records by country into regional PostgreSQL shards.

The command line is `pipeline` (see `pipeline.cli`); the library modules follow the
data: `config` (the shard map), `db` and `embedded` (connections), `schema` (init),
`status`, `extract` (and `to_dataframe`, for notebooks).
"""

from pipeline.extract import to_dataframe

__version__ = "0.1.0"
__all__ = ["to_dataframe"]
