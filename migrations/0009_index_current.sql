-- When may a registry read trust the index over the owner's PDS? When the
-- account's records were read by a backfill, the Jetstream consumer has
-- since replayed the network's events over the walk's window (so a page read
-- before a concurrent write cannot leave the older record standing), and the
-- consumer is following the network now.

-- 1: the consumer connected from a cursor at or before the walk's start
-- after the walk finished; a walk requested again starts at 0.
ALTER TABLE backfill_repos ADD COLUMN replayed INTEGER NOT NULL DEFAULT 0;

-- Failed tries in a row of the page at the walk's place: a walk is given up
-- only after several (a PDS that stalls once does not cost the whole walk).
ALTER TABLE backfill_repos ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

-- Unix ms of the consumer's last check with its socket open (every 30 s);
-- NULL once its socket has closed.
ALTER TABLE jetstream_cursor ADD COLUMN alive_at INTEGER;

UPDATE meta SET value = '9' WHERE key = 'schema_version';
