-- The rows the shard holds of a batch's ids (sparse in their range, given as '{{1,5,...}}'),
-- as probe_range.sql gives them.
COPY (
    SELECT id, country, name, gender, age, address, source
    FROM residents
    WHERE id = ANY({ids}::bigint[])
) TO STDOUT (FORMAT csv)
