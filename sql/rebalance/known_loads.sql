-- The loads the source's ledger accounts for: those that wrote rows here, and those whose
-- rows earlier moves brought here (as sql/check/ledger_written.sql counts them). A moved
-- row naming any other load is recorded for none on the target (record_loads*.sql): the
-- load reconciliation check fails there as it did on the source, where a count given to
-- that load would have made the row look accounted for.
SELECT coalesce(array_agg(load_id), '{}') FROM (
    SELECT load_id FROM load_ledger
    UNION
    SELECT load_id FROM rebalance_loads
) AS known
