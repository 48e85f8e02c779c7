-- The ETags storage gave the parts of blob uploads in progress. Completing
-- an upload needs every one; they used to travel in the upload's sealed
-- Location URL, which grew with each part until clients and the appview
-- refused it (about 8 KB: some 90 parts). Rows go when the upload completes
-- or is cancelled, or with the cron's sweep once it has expired.

CREATE TABLE IF NOT EXISTS upload_parts (
  upload_id   TEXT NOT NULL,              -- the upload's id (Docker-Upload-UUID)
  part_number INTEGER NOT NULL,
  etag        TEXT NOT NULL,
  expires_at  INTEGER NOT NULL,           -- unix seconds: the upload's own deadline
  PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upload_parts_expiry ON upload_parts (expires_at);

UPDATE meta SET value = '8' WHERE key = 'schema_version';
