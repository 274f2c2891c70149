-- The first few failing rows of a check: their samples (ids) and, with --show-samples, the
-- rows in full ({detail}: the detail column, else NULL).
SELECT sample, {detail} FROM ({failing}) AS f LIMIT {limit}
