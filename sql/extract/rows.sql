-- One shard's residents for `pipeline extract`, in id order. A psycopg.sql template:
-- pipeline/extract.py fills in the shard name as the first column (left out for Parquet
-- and DataFrames, which add it themselves), the text columns (as stored, or with
-- spreadsheet formulas defused), the provenance columns if asked, and the filter.
SELECT {shard_column}id, {columns}{provenance}
FROM residents
{where}
ORDER BY id
