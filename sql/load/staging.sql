-- The rows of one file routed to this shard: the fields as read (text), and beside them
-- their normalised, typed values (`*_v`), computed by the server as each row arrives
-- (stored generated columns). The checks so run while the file is still streaming in,
-- instead of in a second pass over the staged rows after it (measured on 600k rows: the
-- COPY takes 1.0 s more, the 1.0 s pass afterwards is gone; the COPY waits on the client
-- anyway). `country` is already normalised (routing needed it); `country_raw` keeps the
-- spelling from the file when it differed, for the rejects file.
--
-- {trimmed_id}, {trimmed_name}...: the field with the characters of pipeline.rules.TRIM
-- trimmed from both ends (trimmed.sql, filled for each field by pipeline.rules). A generated
-- column cannot use another, hence the repeated trims. Out-of-range markers keep "there but
-- invalid" apart from "not there" (NULL): id 0, age -1, gender ''. pipeline/rules.py fills
-- the rules; literal braces are doubled.
CREATE TEMP TABLE load_staging (
    record       bigint NOT NULL,
    line         bigint,
    country      char(2) NOT NULL,
    country_raw  text,
    id           text,
    name         text,
    gender       text,
    age          text,
    address      text,
    -- The length guards keep the casts from overflowing; a bounded repetition such as
    -- [0-9]{{1,18}} would say the same but costs 3x as much in PostgreSQL's regex engine.
    id_v bigint GENERATED ALWAYS AS (
        CASE
            WHEN coalesce({trimmed_id}, '') = '' THEN NULL
            WHEN {trimmed_id} ~ '^\+?[0-9]+$'
                 AND length(ltrim({trimmed_id}, '+')) <= 18
                THEN {trimmed_id}::bigint
            ELSE 0
        END) STORED,
    name_v text GENERATED ALWAYS AS (
        nullif({trimmed_name}, '')) STORED,
    -- The gender map: an alias or accepted value (matched case-insensitively) becomes its
    -- canonical spelling; any other value is kept as it is when the rules accept any value.
    gender_v text GENERATED ALWAYS AS (
        CASE
            WHEN coalesce({trimmed_gender}, '') = '' THEN NULL
            ELSE coalesce(
                {gender_map}::jsonb ->> lower({trimmed_gender}),
                CASE WHEN {any_gender} THEN {trimmed_gender} END,
                '')
        END) STORED,
    -- "22", "+22" and "22.0" are 22; "22.5" and "abc" are not ages
    age_v bigint GENERATED ALWAYS AS (
        CASE
            WHEN coalesce({trimmed_age}, '') = '' THEN NULL
            WHEN {trimmed_age} ~ '^[+-]?[0-9]+(\.0*)?$'
                 AND length(split_part({trimmed_age}, '.', 1)) <= 10
                THEN split_part({trimmed_age}, '.', 1)::bigint
            ELSE -1
        END) STORED,
    address_v text GENERATED ALWAYS AS (
        nullif({trimmed_address}, '')) STORED
) ON COMMIT DROP;

-- Earlier rows of an id that comes again later in the file (duplicates.sql).
CREATE TEMP TABLE load_superseded (record bigint PRIMARY KEY) ON COMMIT DROP;

-- The staged rows with whether a later row superseded them. Most files have no duplicate
-- id: then this reads no other table, and superseded.sql swaps in the join only when
-- duplicates.sql found some (a join costs every later scan of the rows a tenth more,
-- and `record IN (SELECT ...)`, hashed only while it fits in hash_mem, could scan the list
-- again for every row of a file of many duplicates).
CREATE TEMP VIEW load_rows AS
SELECT s.*, false AS superseded
FROM load_staging AS s;

-- Each staged row with why it is refused (`reason`; NULL for a row to load). A view, so
-- that counting, the rejects and the upsert read one definition; dropped with the tables.
CREATE TEMP VIEW load_checked AS
SELECT
    r.*,
    CASE
        WHEN r.name_v IS NULL THEN 'missing_name'
        -- ids from 10^15 up are the shard's own (see sql/migrations/0001_residents.sql)
        WHEN r.id_v NOT BETWEEN 1 AND 999999999999999 THEN 'invalid_id'
        WHEN r.age_v NOT BETWEEN {age_min} AND {age_max} THEN 'invalid_age'
        WHEN r.gender_v = '' THEN 'invalid_gender'
        WHEN r.superseded THEN 'duplicate_id'
    END AS reason
FROM load_rows AS r
