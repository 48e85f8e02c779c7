-- Migration 0004: ATProto OAuth sign-in.
--
-- oauth_sessions holds, per user, the tokens an OAuth sign-in gave the
-- appview and the DPoP key they are bound to, sealed with the appview's
-- secret key; it is how the appview writes the user's records. A refresh
-- spends the single-use refresh token, so it first claims the row
-- (refreshing_until) for the generation it read, and stores the new tokens
-- only over that generation: two refreshes of one session never both spend
-- it. web_sessions are the browsers signed in to the web pages, by the
-- SHA-256 of their cookie.

CREATE TABLE IF NOT EXISTS oauth_sessions (
  did                TEXT PRIMARY KEY,
  issuer             TEXT NOT NULL,
  pds_endpoint       TEXT NOT NULL,
  session_ciphertext TEXT NOT NULL,         -- base64 of secret_box::seal(JSON tokens + DPoP key)
  generation         INTEGER NOT NULL DEFAULT 0,
  refreshing_until   INTEGER,               -- unix ms: a refresh in flight holds the row until then
  dpop_nonce         TEXT,                  -- the PDS's latest DPoP nonce (not secret)
  expires_at         INTEGER NOT NULL,      -- unix ms
  updated_at         INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS web_sessions (
  id_hash    TEXT PRIMARY KEY,              -- SHA-256 (hex) of the cookie's random value
  did        TEXT NOT NULL,
  handle     TEXT NOT NULL,
  avatar_url TEXT,
  created_at INTEGER NOT NULL,              -- unix ms
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_did ON web_sessions (did);

UPDATE meta SET value = '4' WHERE key = 'schema_version';
