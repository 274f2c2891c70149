-- The keyed hash (HMAC-SHA256) of the person fields of resident {row} at level {fields}
-- (an expression: 'name', 'name+age', 'name+address' or 'name+age+address'), exactly as
-- pipeline/erasure_key.py computes it: the level, 0x1E, then the name, the age, the address
-- joined by 0x1F, each trimmed of ASCII white space (a loaded value is trimmed already)
-- and lowered under the C collation, which lowers A-Z only, whatever the server's own
-- collation. HMAC from PostgreSQL's built-in sha256() (no extension): `inner` and `outer`
-- are the key padded and XORed with 0x36 and 0x5C, computed on the client, so the key
-- itself is never sent.
sha256(%(outer)s || sha256(%(inner)s || convert_to(
    {fields} || chr(30) || lower(btrim({row}.name, E' \t\n\r\f\v') COLLATE "C")
    || CASE WHEN {fields} IN ('name+age', 'name+age+address')
            THEN chr(31) || coalesce({row}.age::text, '') ELSE '' END
    || CASE WHEN {fields} IN ('name+address', 'name+age+address')
            THEN chr(31) || coalesce(lower(btrim({row}.address, E' \t\n\r\f\v') COLLATE "C"), '')
            ELSE '' END,
    'UTF8')))
