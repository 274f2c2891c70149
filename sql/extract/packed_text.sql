-- A text column, packed: its values in the client encoding (UTF-8: pipeline.db), each after
-- a zero byte but the first, NULL as the one byte FF (decode(), not a literal: right whatever
-- standard_conforming_strings says). Neither byte can be in text: PostgreSQL
-- text holds no zero byte, and UTF-8 no FF. {value} is `textsend(column)` (its bytes), or
-- bpcharsend for a char(n) column, whose padding it keeps as COPY's CSV does.
string_agg(coalesce({value}, decode('ff', 'hex')), decode('00', 'hex')) AS {column}
