-- The backend's signing keys for removal proposals (RFC 9420 external
-- sender), one per signature scheme; the first node to need one stores it,
-- every node reads the same.
CREATE TABLE mls_removal_keys (
    scheme  INTEGER PRIMARY KEY,
    secret  BLOB    NOT NULL,
    public  BLOB    NOT NULL
);

-- Each write of a group's state (commits and the server's proposals) counts:
-- a write made from a state applies only while it is still that one.
ALTER TABLE mls_groups ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
