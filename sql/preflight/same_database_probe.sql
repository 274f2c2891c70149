-- Which of the probe's advisory locks (each shard's connection holds one, under a random
-- key) can this connection see in its own database? Advisory locks are keyed by database,
-- and pg_locks shows every session's locks to every role: a key seen here was taken by a
-- connection to this very database, whatever DSN spelling led there. A bigint key shows as
-- classid (high 32 bits) and objid (low 32 bits), with objsubid 1.
SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
FROM pg_locks AS l
WHERE l.locktype = 'advisory'
  AND l.objsubid = 1
  AND l.granted
  AND l.database = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY(%s)
