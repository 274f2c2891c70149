-- This shard's erasure log: every erasure recorded here (a few rows; read whole by
-- `erase`, once per `load` run, and by the erasures check).
SELECT person_hash, target_hash, fields, name_hash, key_id, reference, erased_at
FROM erasure_log
