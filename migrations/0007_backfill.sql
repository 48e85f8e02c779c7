-- Backfill: what the index learns from PDSs by reading their records
-- (com.atproto.sync.listRepos, com.atproto.repo.listRecords), for an account
-- seen for the first time and for whole PDSs on an admin request. Each row
-- is where a walk stands, saved after every page, so a walk cut off
-- anywhere resumes there.

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
  updated_at   INTEGER NOT NULL           -- unix ms
);
CREATE INDEX IF NOT EXISTS backfill_repos_state ON backfill_repos (state, requested_at);

-- A rebuild (the index emptied and read again from PDSs): when its backfill
-- ends, the Jetstream consumer replays the network's events from the
-- rebuild's start (rewind_to_us), over what the backfill read.
CREATE TABLE IF NOT EXISTS backfill_rebuilds (
  started_at  INTEGER PRIMARY KEY,        -- unix ms
  finished_at INTEGER                     -- unix ms; NULL while its backfill runs
);
ALTER TABLE jetstream_cursor ADD COLUMN rewind_to_us INTEGER; -- replay from here at the next connection

-- An account deactivated on its PDS (a Jetstream account event, active:
-- false): its user and repositories leave the pages, search and the
-- catalog until it is activated again.
ALTER TABLE users ADD COLUMN deactivated INTEGER NOT NULL DEFAULT 0;

UPDATE meta SET value = '7' WHERE key = 'schema_version';
