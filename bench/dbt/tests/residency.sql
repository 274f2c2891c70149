-- residency: no resident on a shard its country is not routed to (the rule: var residency).
select id, country
from {{ source('shard', 'residents') }}
where not ({{ var('residency') }})
