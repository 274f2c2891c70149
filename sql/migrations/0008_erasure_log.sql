-- `pipeline erase`: the erasure log. Every erasure is recorded on EVERY shard (also those
-- where nobody matched), in the transaction that deletes the person's rows there, so that
-- any one shard's log tells a later load whom to keep out (reason `erased`) and
-- `pipeline check` (kind erasures) whom to look for.
--
-- No personal data in the clear: the person is known by keyed hashes (HMAC-SHA256 under
-- the erasure key, which never reaches a shard: pipeline/erasure_key.py) of the matched
-- fields, normalised (trimmed, A-Z lowered). `name_hash` is the hash of the name alone,
-- for a cheap first test of a row; `person_hash` that of the fields named by `fields`;
-- `target_hash`, for an erasure by SHARD:ID, that of the shard and id it removed (so that
-- a re-run knows it done), else empty. `key_id` tells which key made the hashes: a load
-- or check under another key refuses rather than match nothing.
--
-- One row per erasure, the same on every shard: a re-run after a shard failed inserts the
-- rows the shard lacks and never doubles one (the primary key; ON CONFLICT DO NOTHING).
CREATE TABLE erasure_log (
    person_hash  bytea        NOT NULL,
    target_hash  bytea        NOT NULL DEFAULT ''::bytea,
    fields       text         NOT NULL CONSTRAINT erasure_log_fields
                                  CHECK (fields IN ('name', 'name+age', 'name+address', 'name+age+address')),
    name_hash    bytea        NOT NULL,
    key_id       bytea        NOT NULL,
    reference    text,        -- why: a ticket number (free text, no personal data)
    erased_at    timestamptz  NOT NULL,  -- when the erase ran (the same on every shard)
    recorded_at  timestamptz  NOT NULL DEFAULT now(),  -- when this shard recorded it
    PRIMARY KEY (person_hash, target_hash)
);
