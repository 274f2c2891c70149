-- Write the valid rows. A row whose content is unchanged is not touched (no new
-- row version, no WAL); `xmax = 0` tells an inserted row from an updated one.
-- A row that a later file of this run already wrote (protected.sql; the arrays are
-- empty unless a re-run completes a file after a later one) is not touched either.
-- loaded_at is when the file's transaction began, the same for all its rows on the shard
-- (protected.sql relies on it falling between two ledger rows).
WITH written AS (
    INSERT INTO residents AS r (id, country, name, gender, age, address, load_id, loaded_at,
                                source)
    -- A row without an id takes the identity's next value (from 10^15 up).
    SELECT coalesce(c.id_v, nextval(pg_get_serial_sequence('residents', 'id'))),
           c.country, c.name_v, c.gender_v, c.age_v::smallint, c.address_v, %(load_id)s,
           now(), %(source)s::text
    FROM load_checked AS c
    WHERE c.reason IS NULL AND NOT c.deleting
    ON CONFLICT (id) DO UPDATE
    SET country = EXCLUDED.country,
        name = EXCLUDED.name,
        gender = EXCLUDED.gender,
        age = EXCLUDED.age,
        address = EXCLUDED.address,
        load_id = EXCLUDED.load_id,
        loaded_at = EXCLUDED.loaded_at,
        source = EXCLUDED.source
    WHERE ((r.country, r.name, r.gender, r.age, r.address)
           IS DISTINCT FROM
           (EXCLUDED.country, EXCLUDED.name, EXCLUDED.gender, EXCLUDED.age, EXCLUDED.address)
           -- A load that names its source claims the rows it gives (pipeline/sync.py).
           OR (EXCLUDED.source IS NOT NULL AND r.source IS DISTINCT FROM EXCLUDED.source))
      AND NOT EXISTS (
          SELECT
          FROM unnest(%(kept_load)s::uuid[], %(kept_after)s::timestamptz[],
                      %(kept_until)s::timestamptz[]) AS k (load_id, after, until)
          WHERE r.load_id = k.load_id AND r.loaded_at > coalesce(k.after, '-infinity') AND r.loaded_at <= k.until)
    RETURNING (r.xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
FROM written
