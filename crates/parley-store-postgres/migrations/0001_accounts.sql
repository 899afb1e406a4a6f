-- Accounts, logins, devices and prekeys.
CREATE TABLE activation_codes (
    email      TEXT    PRIMARY KEY,
    code_hash  BYTEA   NOT NULL,
    expires_at BIGINT  NOT NULL,
    tries      BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    email         TEXT    NOT NULL UNIQUE,
    handle        TEXT    UNIQUE,
    password_hash TEXT    NOT NULL,
    accent_id     INTEGER NOT NULL,
    locale        TEXT    NOT NULL,
    picture       TEXT,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE cookies (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id         TEXT    NOT NULL,
    label      TEXT,
    persistent BOOLEAN NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (user_id, id)
);

CREATE TABLE password_resets (
    key        TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BYTEA   NOT NULL,
    expires_at BIGINT  NOT NULL,
    tries      BIGINT  NOT NULL DEFAULT 0
);

CREATE TABLE clients (
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    id           BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    class        TEXT    NOT NULL,
    model        TEXT,
    label        TEXT,
    cookie_label TEXT,
    created_at   BIGINT  NOT NULL,
    seq          BIGINT  GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (user_id, id)
);

CREATE TABLE prekeys (
    user_id   TEXT    NOT NULL,
    client_id BIGINT  NOT NULL,
    id        BIGINT  NOT NULL,
    key       TEXT    NOT NULL,
    seq       BIGINT  GENERATED ALWAYS AS IDENTITY UNIQUE,
    PRIMARY KEY (user_id, client_id, id),
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);
