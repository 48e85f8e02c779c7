-- Migration 0001 of the hold's own D1 database (binding USAGE): what each
-- user stores on a shared hold, for its per-user quotas (HOLD_QUOTA_BYTES,
-- HOLD_QUOTA_BLOBS). A hold without quotas needs no database.
--
-- Applied with `wrangler d1 migrations apply <database> --remote` from
-- hold-worker/ (wrangler records each migration in d1_migrations).
-- Never edit a migration once it is released; add the next one instead.

CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1');

-- One row per (user, distinct blob) the user was charged for: a user pays
-- once for a digest however often they push it. The hold inserts the row in
-- completeUpload before the blob becomes visible, in one statement that also
-- checks the quota; deleteBlob removes every row of the digest.
CREATE TABLE IF NOT EXISTS blob_usage (
  did        TEXT NOT NULL,                -- the user charged
  digest     TEXT NOT NULL,                -- the blob, e.g. sha256:<hex>
  size       INTEGER NOT NULL,             -- bytes
  created_at INTEGER NOT NULL,             -- unix ms
  PRIMARY KEY (did, digest)
);
CREATE INDEX IF NOT EXISTS blob_usage_digest ON blob_usage (digest);
