-- The checks a scan of the shard can settle, counted in one scan: {counts} is the row count,
-- then one count(*) FILTER (WHERE condition) per row check, the condition of its rows.sql
-- query. With {by_load} (`load_id`, and {group} `GROUP BY load_id`) the counts come per
-- load, for load reconciliation (ledger.sql) too; else {by_load} is NULL and {group} empty.
-- One scan instead of three at 1M rows: 0.25 s + 0.08 s (row_count.sql) + 0.12 s
-- (ledger.sql) of the larger shard's CPU.
SELECT {by_load}, {counts}
FROM residents
{group}
