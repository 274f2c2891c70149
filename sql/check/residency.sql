-- A row this shard may not hold: {rule} is the shard's residency rule, the condition of its
-- CHECK constraint (pipeline.schema.ResidencyRule), true for a country the shard may hold.
NOT ({rule})
