-- between fails a row whose value is outside [min, max]; a NULL passes (not_null says
-- whether it may be NULL).
{column} NOT BETWEEN {min} AND {max}
