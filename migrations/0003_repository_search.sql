-- Migration 0003: full-text search over repositories (SQLite FTS5, which D1
-- supports). One row per repository: its owner's handle, its name and its
-- description, searched by word prefix and ranked (bm25); triggers keep it
-- in step with `repositories` and `users`. owner_did and name identify the
-- repository (not rowid: SQLite may renumber implicit rowids on VACUUM).

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

-- The repositories indexed before this migration.
INSERT INTO repository_search (handle, name, description, owner_did)
SELECT u.handle, r.name, r.description, r.owner_did
FROM repositories r LEFT JOIN users u ON u.did = r.owner_did;

UPDATE meta SET value = '3' WHERE key = 'schema_version';
