-- A load reads which ids a renumbering rebalance took from residents it moved here
-- (sql/load/renumbered.sql), so that it never writes one resident over another: the loader
-- role, where `pipeline init --roles` made it, may read them (sql/roles/grant.sql grants it
-- too). A shard of an earlier version refuses loads until `pipeline init` runs this.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'pipeline_loader') THEN
        GRANT SELECT ON rebalance_renumbered TO pipeline_loader;
    END IF;
END
$$;
