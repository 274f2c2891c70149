-- Whether a move's target holds rows of the country already (loaded there, an earlier
-- move's): if not, and no id is taken, the rows can go straight into residents.
SELECT EXISTS (SELECT FROM residents WHERE country = %(country)s)
