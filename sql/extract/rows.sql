-- One shard's residents for `pipeline extract`, in id order. pipeline/extract.py fills in
-- the shard name as the first column (left out for Parquet and DataFrames, which add it
-- themselves), the fields (the text ones as stored, or with spreadsheet formulas defused:
-- defused.sql) and the provenance columns if asked, and the filter.
SELECT {shard_column}{fields}
FROM residents
{where}
ORDER BY id
