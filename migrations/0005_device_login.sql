-- Migration 0005: device login for the credential helper (RFC 8628 shape).
--
-- device_codes are the logins in progress: the helper polls with its
-- device code (kept only as its SHA-256) while the user approves the short
-- user code in a browser. A code goes pending -> approved or denied; the
-- poll that hands out the device secret moves it from approved to spent,
-- so a code gives one secret. Rows are dropped an hour after they expire.
-- The secret itself is kept only as its SHA-256, in devices (0001).

CREATE TABLE IF NOT EXISTS device_codes (
  code_hash      TEXT PRIMARY KEY,          -- SHA-256 (hex) of the device code
  user_code      TEXT NOT NULL UNIQUE,      -- as shown: WDJB-MJHT
  client_name    TEXT NOT NULL,             -- the name the helper proposed for the device
  state          TEXT NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'approved', 'denied', 'spent')),
  did            TEXT,                      -- who approved or denied it
  handle         TEXT,                      -- their handle then
  device_name    TEXT,                      -- the name they gave the device
  created_at     INTEGER NOT NULL,          -- unix ms
  expires_at     INTEGER NOT NULL,
  last_polled_at INTEGER
);
CREATE INDEX IF NOT EXISTS device_codes_expires ON device_codes (expires_at);

UPDATE meta SET value = '5' WHERE key = 'schema_version';
