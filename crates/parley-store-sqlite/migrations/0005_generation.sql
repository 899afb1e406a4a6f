-- Each device's send generation: the highest count of encryptions it has
-- reported with a delivered message. A copy restored from an old backup sees it
-- ahead of its own and starts fresh sessions instead of reusing message keys.
ALTER TABLE clients ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
