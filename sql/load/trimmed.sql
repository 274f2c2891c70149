-- A field of staging.sql trimmed: {trim} is the characters trimmed from both ends of every
-- field (pipeline.rules.TRIM: Unicode's white space, zero width space, byte-order mark...),
-- written by pipeline.rules.TrimCharacters for the server's encoding as chr() calls, which
-- mean the same on PostgreSQL 13 to 18 and whatever the client encoding; the server folds
-- it to a constant once.
btrim({column}, {trim})
