-- How long this file's transaction waits for a lock another session holds (another load's
-- advisory lock, a row being edited by hand): `pipeline load --lock-timeout`. set_config,
-- unlike SET, takes a parameter; `true`: for this transaction only, like SET LOCAL.
SELECT set_config('lock_timeout', %(lock)s, true)
