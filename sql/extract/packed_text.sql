-- A char(n) column, or the text form of another (uuid), packed: its values in the client
-- encoding (UTF-8: pipeline.db), each after a zero byte but the first, NULL as the one byte
-- FF (decode(), not a literal: right whatever standard_conforming_strings says). Neither
-- byte can be in text: PostgreSQL text holds no zero byte, and UTF-8 no FF. {value} is
-- bpcharsend(column), which keeps a char(n)'s padding as COPY's CSV does (a cast to text
-- would trim it), or `textsend(column::text)`. A text column is packed with its sizes
-- (extract/packed_sized.sql).
string_agg(coalesce({value}, decode('ff', 'hex')), decode('00', 'hex')) AS {column}
