-- The user trust chain: a device's identity key signed by its user's root key
-- (JSON, opaque to the server beyond validation), and the user's recovery bundle
-- (an opaque encrypted blob).
ALTER TABLE clients ADD COLUMN trust TEXT;
ALTER TABLE users ADD COLUMN recovery_bundle BYTEA;
