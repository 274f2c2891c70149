-- A text column, packed as two fields: {sizes}, each value's size in bytes as sent (int4,
-- big-endian; -1 for NULL), then {column}, the values one after the other with nothing
-- between them. {size} is the value's octet_length, or, on a server whose text the client
-- gets converted or checked, the octet_length of the value converted to UTF-8
-- (pipeline.packed.SENT_AS_STORED), which checks each value (joined, two halves of a
-- character could pass as one). The values are joined as text and sent once, converted to
-- the client's encoding as a whole: where each was sent on its own between zero bytes
-- (extract/packed_text.sql), the client spent 0.14 s of a 1M-row export finding them
-- again, for 0.05 s less of the servers'. Two fields, not one joined by `||`: a result past
-- 1 GB is then refused as too large (program_limit_exceeded), which pipeline.packed's
-- resumable answers with smaller chunks; `||` fails as an internal error.
string_agg(int4send(coalesce({size}, -1)), ''::bytea) AS {sizes},
coalesce(textsend(string_agg({column}, '')), ''::bytea) AS {column}
