-- MLS: each device's signature key per scheme (set once) and its key packages
-- in the directory. Both go with their device.
CREATE TABLE mls_public_keys (
    user_id   TEXT    NOT NULL,
    client_id INTEGER NOT NULL,
    scheme    INTEGER NOT NULL,
    key       BLOB    NOT NULL,
    PRIMARY KEY (user_id, client_id, scheme),
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);

CREATE TABLE mls_key_packages (
    ref       BLOB    PRIMARY KEY,
    user_id   TEXT    NOT NULL,
    client_id INTEGER NOT NULL,
    suite     INTEGER NOT NULL,
    data      BLOB    NOT NULL,
    not_after INTEGER NOT NULL,
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);

CREATE INDEX mls_key_packages_by_device ON mls_key_packages (user_id, client_id, suite, not_after);
