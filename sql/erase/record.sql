-- One erasure into this shard's log, in the transaction that deletes the person's rows
-- here. An erasure the shard already holds (a re-run after another shard failed) is left
-- as it is: never doubled.
INSERT INTO erasure_log (person_hash, target_hash, fields, name_hash, key_id, reference, erased_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (person_hash, target_hash) DO NOTHING
