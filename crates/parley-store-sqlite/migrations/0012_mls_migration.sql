-- A group conversation on its way from Proteus to MLS ("mixed"): its group
-- is kept beside it while its messages still go by Proteus.
ALTER TABLE mls_groups ADD COLUMN mixed BOOLEAN NOT NULL DEFAULT 0;
