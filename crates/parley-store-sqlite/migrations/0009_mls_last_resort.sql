-- A device's last-resort key package (RFC 9420 §16.8): handed out again when
-- the device has no other, never used up; at most one per device and suite.
ALTER TABLE mls_key_packages ADD COLUMN last_resort BOOLEAN NOT NULL DEFAULT FALSE;
