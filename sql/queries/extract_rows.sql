-- One shard's residents for `pipeline extract`, in id order. A psycopg.sql template
-- (pipeline/extract.py fills the shard name, the text columns, as stored or with spreadsheet
-- formulas defused, the provenance columns if asked, and the filter).
SELECT {shard} AS shard, id, {columns}{provenance}
FROM residents
{where}
ORDER BY id
