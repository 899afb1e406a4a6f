-- One event queue per device: ids count up per device, under a lock on the queue's
-- head, so a queue's order is the order its events were committed in.
CREATE TABLE queue_heads (
    user_id       TEXT   NOT NULL,
    client_id     BIGINT NOT NULL,
    next_id       BIGINT NOT NULL DEFAULT 1,
    purged_before BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, client_id),
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);

INSERT INTO queue_heads (user_id, client_id) SELECT user_id, id FROM clients;

CREATE TABLE notifications (
    user_id    TEXT   NOT NULL,
    client_id  BIGINT NOT NULL,
    id         BIGINT NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id, id),
    FOREIGN KEY (user_id, client_id) REFERENCES clients (user_id, id) ON DELETE CASCADE
);

CREATE INDEX notifications_by_age ON notifications (created_at);
