-- Subconversations (a call's `conference`): each has a group of its own
-- beside its conversation's, keyed by the conversation and its name (`''` for
-- the conversation's own group), and a generation that a reset moves on.
-- SQLite changes a primary key only by making the table again.
CREATE TABLE mls_groups_next (
    conversation_id TEXT    NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    subconversation TEXT    NOT NULL DEFAULT '',
    generation      BIGINT  NOT NULL DEFAULT 0,
    group_id        BLOB    NOT NULL UNIQUE,
    suite           INTEGER NOT NULL,
    epoch           BIGINT  NOT NULL,
    epoch_at        BIGINT  NOT NULL,
    state           BLOB,
    group_info      BLOB,
    revision        BIGINT  NOT NULL DEFAULT 0,
    mixed           BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, subconversation)
);

INSERT INTO mls_groups_next
    (conversation_id, group_id, suite, epoch, epoch_at, state, group_info, revision, mixed)
SELECT conversation_id, group_id, suite, epoch, epoch_at, state, group_info, revision, mixed
FROM mls_groups;

DROP TABLE mls_groups;
ALTER TABLE mls_groups_next RENAME TO mls_groups;

CREATE TABLE mls_group_devices_next (
    conversation_id TEXT   NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    subconversation TEXT   NOT NULL DEFAULT '',
    user_id         TEXT   NOT NULL,
    client_id       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, subconversation, user_id, client_id)
);

INSERT INTO mls_group_devices_next (conversation_id, user_id, client_id)
SELECT conversation_id, user_id, client_id FROM mls_group_devices;

DROP TABLE mls_group_devices;
ALTER TABLE mls_group_devices_next RENAME TO mls_group_devices;
