-- accepted_values fails a row whose value, as text, is not one of the check's {values}; a
-- NULL passes (not_null says whether it may be NULL).
{column} IS NOT NULL AND {column}::text NOT IN ({values})
