-- has_residents (row_count, min 1)
{{ config(severity='warn') }}
select count(*) as n
from {{ source('shard', 'residents') }}
having count(*) < 1
