-- The rows the shard holds in a batch's id range (an index scan), for a batch whose ids
-- fill much of their range: the client keeps those of the batch, and compares their
-- content (and source) with the file's, so that an unchanged row is not sent again. CSV, read by
-- pyarrow: a row per id in Python would cost an object each. {low} and {high} are numbers.
COPY (
    SELECT id, country, name, gender, age, address, source
    FROM residents
    WHERE id BETWEEN {low} AND {high}
) TO STDOUT (FORMAT csv)
