-- Takes ACCESS EXCLUSIVE on residents until commit: nothing can slip in between
-- counting the rows that break the new rule and adding it.
ALTER TABLE residents DROP CONSTRAINT IF EXISTS residents_residency
