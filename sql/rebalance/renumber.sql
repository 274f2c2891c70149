-- --on-id-conflict renumber: a colliding row gets a new id here, the target's next one.
UPDATE rebalance_staging
SET new_id = nextval(pg_get_serial_sequence('residents', 'id')),
    present = false,
    collides = false
WHERE collides AND new_id IS NULL
