-- The seed every node on this database signs tokens with (several nodes behind
-- one address must accept each other's tokens); the first node's key.
CREATE TABLE token_signing_key (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seed BLOB   NOT NULL
);
