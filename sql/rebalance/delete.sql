-- The moved country's rows on the source, once the target holds them (verified).
DELETE FROM residents WHERE country = %(country)s
