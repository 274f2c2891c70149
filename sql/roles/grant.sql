-- What the two group roles may do on this shard (`pipeline init --roles`; GRANT is
-- idempotent, so re-running it after a migration covers new tables). Neither role owns a
-- table, so neither may drop, alter or truncate one. A psycopg.sql template
-- (pipeline/roles.py fills the identifiers).
-- The loader writes residents and the ledger. It also creates the load's temporary tables:
-- TEMP on the database, which PostgreSQL grants to PUBLIC by default.
GRANT USAGE ON SCHEMA {schema} TO {loader}, {analyst};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.residents, {schema}.load_ledger TO {loader};
GRANT USAGE ON SEQUENCE {schema}.{residents_seq}, {schema}.{ledger_seq} TO {loader};
GRANT SELECT ON {schema}.schema_migrations TO {loader}, {analyst};
-- The analyst reads: extract, report, check.
GRANT SELECT ON {schema}.residents, {schema}.load_ledger TO {analyst};
-- The loads of the rows a rebalance moved (the checks read them), and where renumbered rows
-- came from.
GRANT SELECT ON {schema}.rebalance_ledger, {schema}.rebalance_renumbered,
    {schema}.rebalance_loads TO {analyst};
-- `status` and `plan` name a move left half-way (the move ledger), for either role; a load
-- reads which ids a renumbering move took (pipeline.renumbered).
GRANT SELECT ON {schema}.rebalance_ledger, {schema}.rebalance_renumbered TO {loader};
-- The erasure log: `erase` (a loader's job) records in it, `load` and `check` read it.
GRANT SELECT, INSERT ON {schema}.erasure_log TO {loader};
GRANT SELECT ON {schema}.erasure_log TO {analyst};
