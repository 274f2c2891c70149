ALTER TABLE residents ADD CONSTRAINT residents_residency CHECK ({condition});
COMMENT ON CONSTRAINT residents_residency ON residents IS {rule}
