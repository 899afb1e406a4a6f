-- MLS conversations: each one's group as the server follows it (its epoch, the
-- observer's state, the latest group info for external joins), and group
-- messages stored once, each recipient's queue event referring to its row.
CREATE TABLE mls_groups (
    conversation_id TEXT    PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    group_id        BLOB   NOT NULL UNIQUE,
    suite           INTEGER NOT NULL,
    epoch           BIGINT  NOT NULL,
    epoch_at        BIGINT  NOT NULL,
    state           BLOB,
    group_info      BLOB
);

-- The message as base64 text, the form every device receives it in. Purged
-- by age with the events that refer to it, never before them.
CREATE TABLE mls_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT    NOT NULL,
    data            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL
);

CREATE INDEX mls_messages_by_age ON mls_messages (created_at);

ALTER TABLE notifications ADD COLUMN mls_message BIGINT;

CREATE INDEX notifications_by_mls_message ON notifications (mls_message)
    WHERE mls_message IS NOT NULL;

-- The devices in each group (its ratchet tree's leaves), kept by every
-- commit: whom a group message goes to.
CREATE TABLE mls_group_devices (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT   NOT NULL,
    client_id       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id, client_id)
);
