SELECT person_key AS key, id
FROM residents
