-- Settings for one file's transaction on one shard. The duplicate-id pass groups
-- every staged id; 4MB (the default) would spill a large file's ids to disk.
SET LOCAL work_mem = '128MB';
-- The checks' regular expressions are written for standard strings (backslash as itself).
SET LOCAL standard_conforming_strings = on
