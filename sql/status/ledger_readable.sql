-- Whether this role may read the move ledger (the loader role may not before `pipeline
-- init --roles` is run again): `status` and `plan` name unfinished moves only when it may.
SELECT has_table_privilege('rebalance_ledger', 'SELECT')
