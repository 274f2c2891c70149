-- not_null fails a row where one of the check's columns is NULL: this, one a column,
-- joined with OR.
{column} IS NULL
