-- Who blocked a user is looked up from the other side of a connection
-- (blocks apply inside groups, and prekey claims need a relationship).
CREATE INDEX connections_by_to ON connections (to_id, status);
