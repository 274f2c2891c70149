-- A smallint column, packed: 4 bytes a value (int4, big-endian), NULL as 65536, a value
-- no smallint holds.
string_agg(int4send(coalesce({column}::integer, 65536)), ''::bytea) AS {column}
