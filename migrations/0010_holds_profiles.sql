-- The index follows three more collections: users' profiles (their
-- default hold), the holds they run and those holds' crew. Like the other
-- index tables these are a cache of PDS records, filled write-through by
-- the appview's settings, from Jetstream and by backfills, and emptied by
-- a rebuild. Times are the records' own (unix ms), so a record read twice
-- leaves the same row.

-- io.atcr.sailor.profile records (key self): one per user.
CREATE TABLE IF NOT EXISTS profiles (
  did          TEXT PRIMARY KEY,
  default_hold TEXT,                      -- the hold new blobs go to; NULL: the appview's default
  updated_at   INTEGER NOT NULL           -- the record's updatedAt, else createdAt
);

-- io.atcr.hold records: holds their owners run (the record is in the
-- owner's repository).
CREATE TABLE IF NOT EXISTS holds (
  record_uri TEXT PRIMARY KEY,            -- at://owner/io.atcr.hold/rkey
  owner_did  TEXT NOT NULL,
  hold_did   TEXT NOT NULL,               -- the endpoint when it is a did:web, else its URL's did:web
  endpoint   TEXT NOT NULL,
  public     INTEGER NOT NULL,            -- 1: anyone may pull
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS holds_owner ON holds (owner_did);

-- io.atcr.hold.crew records: who may push to an owner's holds (crew
-- belongs to the owner, so to every hold they run).
CREATE TABLE IF NOT EXISTS crew (
  record_uri  TEXT PRIMARY KEY,           -- at://owner/io.atcr.hold.crew/rkey
  owner_did   TEXT NOT NULL,
  member_did  TEXT NOT NULL,
  role        TEXT,
  permissions TEXT NOT NULL,              -- JSON array: blob:read, blob:write; []: both
  added_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS crew_owner ON crew (owner_did, member_did);

UPDATE meta SET value = '10' WHERE key = 'schema_version';
