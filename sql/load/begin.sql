-- Settings for one file's transaction on one shard (`true`: for this transaction only, like
-- SET LOCAL; set_config, unlike SET, takes a parameter, and one statement can set them all):
-- work_mem: the duplicate-id pass groups every staged id, and 4MB (the default) would spill
--   a large file's ids to disk;
-- standard_conforming_strings: the checks' regular expressions are written for standard
--   strings (backslash as itself);
-- lock_timeout: how long the transaction waits for a lock another session holds (another
--   load's advisory lock, a row being edited by hand): `pipeline load --lock-timeout`.
SELECT set_config('work_mem', '128MB', true),
       set_config('standard_conforming_strings', 'on', true),
       set_config('lock_timeout', %(lock)s, true)
