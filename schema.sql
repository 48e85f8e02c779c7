-- D1 schema of the ATCR appview: the whole current schema, for readers.
--
-- Databases get it from migrations/ (`wrangler d1 migrations apply`), never
-- from this file. To change the schema, add migrations/NNNN_<what>.sql (it
-- also sets meta.schema_version to its number: 0002 sets '2') and edit this
-- file to match. tests/e2e/d1-migrations.test.mjs checks that every migration
-- applied to an empty database gives exactly this schema, and that the newest
-- migration upgrades a database holding rows without losing one.
--
-- The PDS of each user is the source of truth for manifests and tags; the
-- tables marked "index" are a cache of those records, filled write-through by
-- the appview and from the network, and safe to rebuild from PDSes.

CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '10');

-- index: identities seen by the appview.
CREATE TABLE IF NOT EXISTS users (
  did          TEXT PRIMARY KEY,
  handle       TEXT,
  pds_endpoint TEXT NOT NULL,
  avatar_url   TEXT,
  updated_at   INTEGER NOT NULL,           -- unix ms
  deactivated  INTEGER NOT NULL DEFAULT 0  -- 1: the account is deactivated, hidden from pages (0007)
);
CREATE INDEX IF NOT EXISTS users_handle ON users (handle);

-- index: one row per (owner, repository name).
CREATE TABLE IF NOT EXISTS repositories (
  owner_did   TEXT NOT NULL REFERENCES users (did),
  name        TEXT NOT NULL,
  description TEXT,
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  PRIMARY KEY (owner_did, name)
);
CREATE INDEX IF NOT EXISTS repositories_updated ON repositories (updated_at DESC);

-- index: full-text search over repositories (FTS5): the owner's handle, the
-- name and the description, kept in step by the triggers below.
CREATE VIRTUAL TABLE IF NOT EXISTS repository_search USING fts5(
  handle,
  name,
  description,
  owner_did UNINDEXED
);

CREATE TRIGGER IF NOT EXISTS repository_search_insert AFTER INSERT ON repositories BEGIN
  INSERT INTO repository_search (handle, name, description, owner_did)
  VALUES ((SELECT handle FROM users WHERE did = new.owner_did), new.name, new.description, new.owner_did);
END;

CREATE TRIGGER IF NOT EXISTS repository_search_describe AFTER UPDATE OF description ON repositories
WHEN old.description IS NOT new.description BEGIN
  UPDATE repository_search SET description = new.description
  WHERE owner_did = new.owner_did AND name = new.name;
END;

CREATE TRIGGER IF NOT EXISTS repository_search_delete AFTER DELETE ON repositories BEGIN
  DELETE FROM repository_search WHERE owner_did = old.owner_did AND name = old.name;
END;

CREATE TRIGGER IF NOT EXISTS repository_search_handle AFTER UPDATE OF handle ON users
WHEN old.handle IS NOT new.handle BEGIN
  UPDATE repository_search SET handle = new.handle WHERE owner_did = new.did;
END;

-- index: io.atcr.manifest records.
CREATE TABLE IF NOT EXISTS manifests (
  owner_did     TEXT NOT NULL,
  repository    TEXT NOT NULL,
  digest        TEXT NOT NULL,
  media_type    TEXT NOT NULL,
  artifact_type TEXT,
  subject       TEXT,                      -- digest of the manifest this one refers to
  size          INTEGER NOT NULL,
  hold_did      TEXT,
  record_uri    TEXT NOT NULL,             -- at://did/io.atcr.manifest/rkey
  platforms     TEXT,                      -- JSON array, for image indexes
  created_at    INTEGER NOT NULL,
  PRIMARY KEY (owner_did, repository, digest),
  FOREIGN KEY (owner_did, repository) REFERENCES repositories (owner_did, name)
);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (owner_did, repository, subject);

-- index: io.atcr.tag records.
CREATE TABLE IF NOT EXISTS tags (
  owner_did  TEXT NOT NULL,
  repository TEXT NOT NULL,
  tag        TEXT NOT NULL,
  digest     TEXT NOT NULL,
  record_uri TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (owner_did, repository, tag),
  FOREIGN KEY (owner_did, repository) REFERENCES repositories (owner_did, name)
);

-- One increment per manifest GET by a client.
CREATE TABLE IF NOT EXISTS pulls (
  owner_did  TEXT NOT NULL,
  repository TEXT NOT NULL,
  count      INTEGER NOT NULL DEFAULT 0,
  last_pull  INTEGER,
  PRIMARY KEY (owner_did, repository)
);

-- Blobs deleted from one repository's view (DELETE /v2/<name>/blobs/<digest>):
-- GET and HEAD there answer BLOB_UNKNOWN until the blob is uploaded or mounted
-- there again; the shared, content-addressed bytes stay while a manifest of
-- the owner names them.
CREATE TABLE IF NOT EXISTS blob_unlinks (
  owner_did   TEXT NOT NULL,
  repository  TEXT NOT NULL,
  digest      TEXT NOT NULL,
  unlinked_at INTEGER NOT NULL,
  PRIMARY KEY (owner_did, repository, digest)
);

-- io.atcr.sailor.star records (the star lives in the starrer's PDS).
CREATE TABLE IF NOT EXISTS stars (
  starrer_did TEXT NOT NULL,
  owner_did   TEXT NOT NULL,
  repository  TEXT NOT NULL,
  record_uri  TEXT NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (starrer_did, owner_did, repository)
);
CREATE INDEX IF NOT EXISTS stars_repository ON stars (owner_did, repository);

-- index (migration 0010): io.atcr.sailor.profile records, one per user: the
-- hold their new blobs go to. Times here and below are the records' own.
CREATE TABLE IF NOT EXISTS profiles (
  did          TEXT PRIMARY KEY,
  default_hold TEXT,                      -- NULL: the appview's default hold
  updated_at   INTEGER NOT NULL           -- the record's updatedAt, else createdAt
);

-- index (migration 0010): io.atcr.hold records, holds their owners run.
CREATE TABLE IF NOT EXISTS holds (
  record_uri TEXT PRIMARY KEY,            -- at://owner/io.atcr.hold/rkey
  owner_did  TEXT NOT NULL,
  hold_did   TEXT NOT NULL,               -- the endpoint when it is a did:web, else its URL's did:web
  endpoint   TEXT NOT NULL,
  public     INTEGER NOT NULL,            -- 1: anyone may pull
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_owner ON holds (owner_did);

-- index (migration 0010): io.atcr.hold.crew records: who may push to an
-- owner's holds (crew belongs to the owner, so to every hold they run).
CREATE TABLE IF NOT EXISTS crew (
  record_uri  TEXT PRIMARY KEY,           -- at://owner/io.atcr.hold.crew/rkey
  owner_did   TEXT NOT NULL,
  member_did  TEXT NOT NULL,
  role        TEXT,
  permissions TEXT NOT NULL,              -- JSON array: blob:read, blob:write; []: both
  added_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS crew_owner ON crew (owner_did, member_did);

-- The Jetstream consumer's place in the network's stream (migration 0006):
-- the time_us of the last event it applied (it resumes a few seconds before
-- it after a restart or a dropped connection), and how many events it
-- applied and skipped (records that break their lexicon, unreadable messages).
CREATE TABLE IF NOT EXISTS jetstream_cursor (
  consumer   TEXT PRIMARY KEY,            -- 'jetstream': one consumer per appview
  endpoint   TEXT NOT NULL,               -- the JETSTREAM_URL it follows
  time_us    INTEGER,                     -- unix µs of the last event applied
  applied    INTEGER NOT NULL DEFAULT 0,
  skipped    INTEGER NOT NULL DEFAULT 0,
  last_skip  TEXT,                        -- why the last skipped event was skipped
  updated_at INTEGER NOT NULL,            -- unix ms
  rewind_to_us INTEGER,                   -- replay from here at the next connection (0007: after a rebuild)
  alive_at   INTEGER                      -- unix ms of the last check with the socket open; NULL once closed (0009)
);

-- Backfill (migration 0007): where each walk of a PDS's accounts and of an
-- account's records stands, saved after every page so a walk resumes.
-- A PDS whose accounts are being listed (listRepos).
CREATE TABLE IF NOT EXISTS backfill_hosts (
  pds        TEXT PRIMARY KEY,            -- the PDS's URL
  cursor     TEXT,                        -- listRepos cursor of the next page
  state      TEXT NOT NULL,               -- 'listing', 'listed', 'failed'
  repos      INTEGER NOT NULL DEFAULT 0,  -- accounts found so far
  error      TEXT,                        -- why it failed
  started_at INTEGER NOT NULL,            -- unix ms
  updated_at INTEGER NOT NULL             -- unix ms
);

-- An account whose records are being read (listRecords per collection).
CREATE TABLE IF NOT EXISTS backfill_repos (
  did          TEXT PRIMARY KEY,
  pds          TEXT NOT NULL,
  state        TEXT NOT NULL,             -- 'pending', 'done', 'failed'
  collection   TEXT,                      -- the collection being read
  cursor       TEXT,                      -- its listRecords cursor
  records      INTEGER NOT NULL DEFAULT 0, -- records applied
  skipped      INTEGER NOT NULL DEFAULT 0, -- records that broke their lexicon
  last_skip    TEXT,
  error        TEXT,
  requested_at INTEGER NOT NULL,          -- unix ms
  updated_at   INTEGER NOT NULL,          -- unix ms
  replayed     INTEGER NOT NULL DEFAULT 0, -- 1: the consumer replayed the stream over this walk since it finished (0009)
  attempts     INTEGER NOT NULL DEFAULT 0  -- failed tries in a row of the page at cursor (0009)
);
CREATE INDEX IF NOT EXISTS backfill_repos_state ON backfill_repos (state, requested_at);

-- A rebuild (the index emptied and read again from PDSs): when its backfill
-- ends, the Jetstream consumer replays the network's events from the
-- rebuild's start (jetstream_cursor.rewind_to_us), over what the backfill read.
CREATE TABLE IF NOT EXISTS backfill_rebuilds (
  started_at  INTEGER PRIMARY KEY,        -- unix ms
  finished_at INTEGER                     -- unix ms; NULL while its backfill runs
);

-- PDS sessions the appview holds to write a user's records (app password or
-- OAuth). Tokens are encrypted with the appview's secret key before storage.
-- credential_mac is an HMAC of the app password under the appview's key, so a
-- repeated `docker login` is recognised without a new PDS sign-in.
CREATE TABLE IF NOT EXISTS pds_sessions (
  did               TEXT PRIMARY KEY,
  kind              TEXT NOT NULL CHECK (kind IN ('app_password', 'oauth')),
  pds_endpoint      TEXT NOT NULL,
  tokens_ciphertext TEXT NOT NULL,          -- base64 of secret_box::seal(JSON tokens)
  credential_mac    TEXT,
  expires_at        INTEGER NOT NULL,
  updated_at        INTEGER NOT NULL
);

-- ATProto OAuth sessions (migration 0004): per user, the tokens an OAuth
-- sign-in gave the appview and the DPoP key they are bound to, sealed with
-- the appview's secret key; the appview writes the user's records with them
-- (before an app-password session). A refresh claims the row
-- (refreshing_until) for the generation it read and stores new tokens only
-- over that generation, so a single-use refresh token is spent once.
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

-- Browsers signed in to the web pages, by the SHA-256 of their cookie.
CREATE TABLE IF NOT EXISTS web_sessions (
  id_hash    TEXT PRIMARY KEY,              -- SHA-256 (hex) of the cookie's random value
  did        TEXT NOT NULL,
  handle     TEXT NOT NULL,
  avatar_url TEXT,
  created_at INTEGER NOT NULL,              -- unix ms
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_did ON web_sessions (did);

-- Credential-helper devices: a revocable secret per device, stored hashed.
CREATE TABLE IF NOT EXISTS devices (
  id           TEXT PRIMARY KEY,
  did          TEXT NOT NULL,
  name         TEXT NOT NULL,
  secret_hash  TEXT NOT NULL UNIQUE,
  created_at   INTEGER NOT NULL,
  last_used_at INTEGER
);
CREATE INDEX IF NOT EXISTS devices_did ON devices (did);

-- Device logins in progress (migration 0005): the helper polls with its
-- device code (kept only as its SHA-256) while the user approves the user
-- code in a browser: pending -> approved or denied; the poll that hands out
-- the device secret moves approved -> spent, so a code gives one secret.
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

-- The ETags storage gave the parts of blob uploads in progress: completing
-- an upload needs every one, and its sealed Location URL carries only how
-- many there are. Rows go when the upload completes or is cancelled, or
-- with the cron's sweep once it has expired.
CREATE TABLE IF NOT EXISTS upload_parts (
  upload_id   TEXT NOT NULL,              -- the upload's id (Docker-Upload-UUID)
  part_number INTEGER NOT NULL,
  etag        TEXT NOT NULL,
  expires_at  INTEGER NOT NULL,           -- unix seconds: the upload's own deadline
  PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upload_parts_expiry ON upload_parts (expires_at);

-- Identity resolution (handle -> DID, DID -> document) is cached per isolate
-- and in the Workers Cache API, not here.
