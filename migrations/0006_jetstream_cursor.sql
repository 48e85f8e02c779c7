-- The Jetstream consumer's place in the network's stream: the time_us of the
-- last event it applied (it resumes a few seconds before it after a restart
-- or a dropped connection), and how many events it applied and skipped
-- (records that break their lexicon, unreadable messages).

CREATE TABLE IF NOT EXISTS jetstream_cursor (
  consumer   TEXT PRIMARY KEY,            -- 'jetstream': one consumer per appview
  endpoint   TEXT NOT NULL,               -- the JETSTREAM_URL it follows
  time_us    INTEGER,                     -- unix µs of the last event applied
  applied    INTEGER NOT NULL DEFAULT 0,
  skipped    INTEGER NOT NULL DEFAULT 0,
  last_skip  TEXT,                        -- why the last skipped event was skipped
  updated_at INTEGER NOT NULL             -- unix ms
);

UPDATE meta SET value = '6' WHERE key = 'schema_version';
