-- The rows the shard holds of a batch's ids ({where}: `id BETWEEN low AND high`, an index
-- scan, when the batch's ids fill much of their range; else `id = ANY('{{1,5,...}}')`). The
-- client keeps those of the batch and compares their content (and source) with the file's,
-- so that an unchanged row is not sent again.
-- Packed into columns by the server, as for extract ({packed}: extract/packed_*.sql): one
-- row holding the count and each column's values, which pipeline/shard_rows.py unpacks
-- with numpy. As COPY's CSV, a message a row cost the client some 1.3 s of CPU in a
-- 1M-row re-load. A row of more than {pack_bytes} bytes of text comes in a row of its own,
-- so that the packed values stay far below what a bytea holds whatever the rows hold (a
-- running sum to cut packs by size cost the server twice as much). The aggregates of a
-- group read its rows in one order, so that the columns line up.
SELECT count(*), {packed}
FROM (
    SELECT id, country, name, gender, age, address, source,
        CASE
            WHEN octet_length(name) + coalesce(octet_length(gender), 0)
                + coalesce(octet_length(address), 0) + coalesce(octet_length(source), 0)
                <= {pack_bytes}
            THEN 0
            ELSE id
        END AS pack
    FROM residents
    WHERE {where}
) AS resident
GROUP BY pack
