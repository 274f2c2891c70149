"""The catalogue: every SQL file the code runs, by the part of the code that runs it.

Each class is a folder of `sql/` and each attribute one of its files, read when this
module is imported (a missing file, or a template whose placeholders differ from those
declared here, fails then): `conn.execute(LOAD.upsert, params)`,
`CHECK.rows.format(sample=..., condition=...)`. A `Statement` runs as it is, with
parameters; a `Template` names the placeholders its `.format()` must be given
(`pipeline.sqlfiles`). tests/test_sqlfiles.py checks that every file of `sql/` is here and
every entry here is used.
"""

from __future__ import annotations

from pipeline.sqlfiles import Statement, Template


class SCHEMA:
    """sql/schema/: migrations and the residency constraint (pipeline.schema)."""

    lock = Statement("schema/lock")
    migrations_table = Statement("schema/migrations_table")
    record_migration = Statement("schema/record_migration")
    table_exists = Statement("schema/table_exists")
    migrations_columns = Statement("schema/migrations_columns")
    relations_taken = Statement("schema/relations_taken")
    version = Statement("schema/version")
    residency_rule = Statement("schema/residency_rule")
    residency_drop = Statement("schema/residency_drop")
    residency_violations = Template("schema/residency_violations", "condition")
    residency_add = Template("schema/residency_add", "condition", "rule")


class ROLES:
    """sql/roles/: the group roles of `pipeline init --roles` (pipeline.roles)."""

    missing = Statement("roles/missing")
    create = Template("roles/create", "role")
    objects = Statement("roles/objects")
    grant = Template("roles/grant", "schema", "loader", "analyst", "residents_seq", "ledger_seq")


class PREFLIGHT:
    """sql/preflight/: before a command writes (pipeline.preflight)."""

    probe_timeout = Statement("preflight/probe_timeout")
    same_database_try_lock = Statement("preflight/same_database_try_lock")
    same_database_probe = Statement("preflight/same_database_probe")
    load_privileges_missing = Statement("preflight/load_privileges_missing")


class DB:
    """sql/db/: connections (pipeline.db)."""

    snapshot_settings = Statement("db/snapshot_settings")
    date_style = Statement("db/date_style")
    server_timeout = Template("db/server_timeout", "name")


class EMBEDDED:
    """sql/embedded/: the embedded server's databases (pipeline.embedded)."""

    database_exists = Statement("embedded/database_exists")
    create_database = Template("embedded/create_database", "database")


class LOAD:
    """sql/load/: one file into one shard, in one transaction (pipeline.writer)."""

    session = Statement("load/session")
    begin = Statement("load/begin")
    ledger_find = Statement("load/ledger_find")
    protected = Statement("load/protected")
    ledger_holds = Statement("load/ledger_holds")
    ledger_since = Statement("load/ledger_since")
    staging = Statement("load/staging")
    staging_empty = Statement("load/staging_empty")
    file_start = Statement("load/file_start")
    file_restart = Statement("load/file_restart")
    probe = Template("load/probe", "where", "packed", "pack_bytes")
    copy_seen = Statement("load/copy_seen")
    copy_kept = Statement("load/copy_kept")
    copy_missing = Statement("load/copy_missing")
    seen_superseded = Statement("load/seen_superseded")
    copy_direct = Statement("load/copy_direct")
    copy = Statement("load/copy")
    duplicates = Statement("load/duplicates")
    superseded = Statement("load/superseded")
    rejects = Statement("load/rejects")
    kept = Statement("load/kept")
    preview = Statement("load/preview")
    source_rows = Statement("load/source_rows")
    no_nested_loops = Statement("load/no_nested_loops")
    snapshot_delete = Template("load/snapshot_delete", "gone")
    gone_unlisted = Statement("load/gone_unlisted")
    gone_in_range = Statement("load/gone_in_range")
    nested_loops = Statement("load/nested_loops")
    delete_marked = Statement("load/delete_marked")
    savepoint = Statement("load/savepoint")
    joins_by_id = Statement("load/joins_by_id")
    update = Statement("load/update")
    insert = Statement("load/insert")
    joins_any = Statement("load/joins_any")
    savepoint_undo = Statement("load/savepoint_undo")
    upsert = Statement("load/upsert")
    ledger_insert = Statement("load/ledger_insert")
    renumbered = Statement("load/renumbered")


class REBALANCE:
    """sql/rebalance/: `pipeline plan` and `pipeline rebalance` (pipeline.plan, pipeline.move,
    pipeline.rebalance)."""

    countries = Statement("rebalance/countries")
    lock = Statement("rebalance/lock")
    try_lock = Statement("rebalance/try_lock")
    unlock = Statement("rebalance/unlock")
    unfinished = Statement("rebalance/unfinished")
    deleted = Statement("rebalance/deleted")
    hash = Template("rebalance/hash", "rows")
    hash_md5 = Template("rebalance/hash_md5", "rows")
    source_rows = Statement("rebalance/source_rows")
    target_rows = Statement("rebalance/target_rows")
    copy_out = Template("rebalance/copy_out", "country")
    staging = Statement("rebalance/staging")
    copy_in = Statement("rebalance/copy_in")
    earlier_renumbered = Statement("rebalance/earlier_renumbered")
    present = Statement("rebalance/present")
    collisions = Statement("rebalance/collisions")
    sequence = Statement("rebalance/sequence")
    renumber = Statement("rebalance/renumber")
    insert = Statement("rebalance/insert")
    record_renumbered = Statement("rebalance/record_renumbered")
    record_loads = Statement("rebalance/record_loads")
    known_loads = Statement("rebalance/known_loads")
    ledger_insert = Statement("rebalance/ledger_insert")
    delete = Statement("rebalance/delete")
    taken = Statement("rebalance/taken")
    copy_direct = Statement("rebalance/copy_direct")
    sequence_direct = Statement("rebalance/sequence_direct")
    record_loads_direct = Statement("rebalance/record_loads_direct")
    forget_renumbered = Statement("rebalance/forget_renumbered")
    export_snapshot = Statement("rebalance/export_snapshot")
    use_snapshot = Template("rebalance/use_snapshot", "snapshot")


class STATUS:
    """sql/status/: `pipeline status` (pipeline.status)."""

    shard = Statement("status/shard")
    ledger_readable = Statement("status/ledger_readable")


class EXTRACT:
    """sql/extract/: `pipeline extract` and `to_dataframe` (pipeline.extract)."""

    rows = Template("extract/rows", "shard_column", "fields", "where")
    json = Template("extract/json", "shard", "fields", "where")
    defused = Template("extract/defused", "column", "starts", "kind")
    copy = Template("extract/copy", "rows", "format")
    columns = Template("extract/columns", "filter", "after", "skip", "rows", "packed", "fields")
    packed_fixed = Template("extract/packed_fixed", "send", "column")
    packed_sized = Template("extract/packed_sized", "size", "sizes", "column")
    packed_smallint = Template("extract/packed_smallint", "column")
    packed_text = Template("extract/packed_text", "value", "column")
    moves = Statement("extract/moves")


class REPORT:
    """sql/report/: `pipeline report` (pipeline.report)."""

    figures = Statement("report/figures")
    loads = Statement("report/loads")


class CHECK:
    """sql/check/: `pipeline check`, on each shard (pipeline.checks) and across shards
    (pipeline.crosscheck)."""

    # The row checks: a condition, true for a failing row, and a sample expression.
    residency = Template("check/residency", "rule")
    not_null = Template("check/not_null", "column")
    accepted_values = Template("check/accepted_values", "column", "values")
    between = Template("check/between", "column", "min", "max")
    id_sample = Statement("check/id_sample")
    residency_sample = Statement("check/residency_sample")
    accepted_values_sample = Template("check/accepted_values_sample", "name", "column")
    failing_count = Template("check/failing_count", "condition")
    counts = Template("check/counts", "by_load", "counts", "group")
    rows = Template("check/rows", "sample", "condition")
    # The other per-shard checks, each a query of its failing rows.
    schema = Template("check/schema", "expected", "latest")
    row_count = Template("check/row_count", "min", "max", "expected")
    ledger = Template("check/ledger", "written")
    ledger_written = Statement("check/ledger_written")
    custom = Template("check/custom", "custom")
    custom_alone = Template("check/custom_alone", "custom")
    unique = Template("check/unique", "columns")
    run = Template("check/run", "failing", "limit")
    first = Template("check/first", "detail", "failing", "limit")
    # Across shards.
    size = Statement("check/size")
    ids = Statement("check/ids")
    people = Statement("check/people")
    ids_shown = Statement("check/ids_shown")
    people_shown = Statement("check/people_shown")
    keys = Template("check/keys", "aggregates", "blocks")
    keys_pg13 = Template("check/keys_pg13", "aggregates", "groups")
    copy = Template("check/copy", "rows")
    ledger_files = Statement("check/ledger_files")
    erasures = Template("check/erasures", "name", "person")


class ERASE:
    """sql/erase/: `pipeline erase`, and the erasure log that load and check read
    (pipeline.erase, pipeline.erased, pipeline.erasure_check)."""

    person = Template("erase/person", "fields", "row")
    log = Statement("erase/log")
    record = Statement("erase/record")
    rows = Statement("erase/rows")
    delete_ids = Statement("erase/delete_ids")
    matching = Template("erase/matching", "person")
    delete_matching = Template("erase/delete_matching", "person")
    lock_timeout = Statement("erase/lock_timeout")
