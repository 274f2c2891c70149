-- plausible_age (between 0 and 120)
{{ config(severity='warn') }}
select id, age
from {{ source('shard', 'residents') }}
where age not between 0 and 120
