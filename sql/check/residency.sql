-- A row this shard may not hold: {rule} is the shard's residency rule, the condition of its
-- CHECK constraint (pipeline.schema.ResidencyRule), true for a country the shard may hold.
-- ... or whose code is not as the map and the loader write it: a country written by hand
-- in lower case (`us`) is no code the rule names, and the default shard's NOT IN takes it.
(NOT ({rule}) OR country <> upper(country))
