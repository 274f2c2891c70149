-- An accepted_values failure's sample: the offending value is what a person needs to fix
-- the rules or the data. {name} is the column's name, as a literal.
'id=' || id || ' ' || {name} || '=' || {column}
