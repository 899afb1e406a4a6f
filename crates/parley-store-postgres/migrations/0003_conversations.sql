-- Connections between users, conversations with their members, and devices' push
-- endpoints. A deleted user or device leaves all of them at once (cascades).
CREATE TABLE connections (
    from_id         TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    to_id           TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status          TEXT   NOT NULL,
    conversation_id TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (from_id, to_id)
);

CREATE TABLE conversations (
    id            TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL,
    name          TEXT,
    creator       TEXT    NOT NULL,
    message_timer BIGINT,
    receipt_mode  BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE INDEX conversation_members_by_user ON conversation_members (user_id, conversation_id);

CREATE TABLE push_endpoints (
    user_id   TEXT   NOT NULL,
    client_id BIGINT NOT NULL,
    url       TEXT   NOT NULL,
    PRIMARY KEY (user_id, client_id),
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);
