-- load_reconciliation on one shard: no load holds more rows than its ledger says it wrote
select r.load_id
from (
    select load_id, count(*) as n
    from {{ source('shard', 'residents') }}
    where load_id is not null
    group by load_id
) as r
left join (
    select load_id, sum(inserted + updated) as written from load_ledger group by load_id
) as l using (load_id)
where r.n > coalesce(l.written, 0)
