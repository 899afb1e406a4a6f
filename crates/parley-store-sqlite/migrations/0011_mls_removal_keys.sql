-- The backend's signing keys for removal proposals (RFC 9420 external
-- sender), one per signature scheme; the first node to need one stores it,
-- every node reads the same.
CREATE TABLE mls_removal_keys (
    scheme  INTEGER PRIMARY KEY,
    secret  BLOB    NOT NULL,
    public  BLOB    NOT NULL
);
