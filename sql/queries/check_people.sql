-- A digest of each resident's person fields (name, age, address), in digest order, for
-- the cross-shard "same person" check: no personal data leaves the shard.
COPY (
    SELECT md5(concat_ws(chr(31), lower(name), age::text, lower(coalesce(address, '')))) AS h, id
    FROM residents
    ORDER BY h, id
) TO STDOUT
