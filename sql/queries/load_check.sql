-- Normalise and check the staged rows, set-based. The rules of config/rules.yaml
-- fill the gender_map, age_min and age_max placeholders. `reason` is NULL for a valid row.
-- Trimming covers ASCII white space and the no-break space. Spelled to mean the same on
-- PostgreSQL 13 to 18: E'\v' is a vertical tab only from 16 on (before, the letter v, which
-- turned "Ivanov" into "Ivano"), so the tab is \013; and chr(160), unlike a \u escape, is
-- the no-break space in any server encoding.
-- This file is a psycopg.sql template: literal braces are doubled.
CREATE TEMP TABLE load_checked ON COMMIT DROP AS
WITH trimmed AS (
    SELECT
        record,
        country,
        nullif(btrim(id, E' \t\n\r\f\013' || chr(160)), '') AS id_t,
        nullif(btrim(name, E' \t\n\r\f\013' || chr(160)), '') AS name_t,
        nullif(btrim(gender, E' \t\n\r\f\013' || chr(160)), '') AS gender_t,
        nullif(btrim(age, E' \t\n\r\f\013' || chr(160)), '') AS age_t,
        nullif(btrim(address, E' \t\n\r\f\013' || chr(160)), '') AS address_t
    FROM load_staging
    -- OFFSET 0 keeps PostgreSQL from inlining this step into the next: inlined, every
    -- reference below would trim again (measured: 4x slower on 1M rows).
    OFFSET 0
),
typed AS (
    SELECT
        *,
        -- The length guards keep the casts from overflowing; a bounded repetition such as
        -- [0-9]{{1,18}} would say the same but costs 3x as much in PostgreSQL's regex engine.
        CASE WHEN id_t ~ '^\+?[0-9]+$' AND length(ltrim(id_t, '+')) <= 18
            THEN id_t::bigint END AS id_v,
        -- "22", "+22" and "22.0" are 22; "22.5" and "abc" are not ages
        CASE WHEN age_t ~ '^[+-]?[0-9]+(\.0*)?$' AND length(split_part(age_t, '.', 1)) <= 10
            THEN split_part(age_t, '.', 1)::bigint END AS age_v,
        {gender_map} AS gender_v
    FROM trimmed
    OFFSET 0  -- likewise: match each regular expression once per row
)
SELECT
    record,
    country,
    id_v AS id,
    name_t AS name,
    gender_v AS gender,
    age_v AS age,
    address_t AS address,
    CASE
        WHEN name_t IS NULL THEN 'missing_name'
        -- ids from 10^15 up are the shard's own (see 0001_residents.sql)
        WHEN id_t IS NOT NULL AND (id_v IS NULL OR id_v NOT BETWEEN 1 AND 999999999999999)
            THEN 'invalid_id'
        WHEN age_t IS NOT NULL AND (age_v IS NULL OR age_v NOT BETWEEN {age_min} AND {age_max})
            THEN 'invalid_age'
        WHEN gender_t IS NOT NULL AND gender_v IS NULL THEN 'invalid_gender'
    END AS reason
FROM typed
