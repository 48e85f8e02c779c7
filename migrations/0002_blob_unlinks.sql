-- Migration 0002: blobs deleted from one repository's view.
--
-- DELETE /v2/<name>/blobs/<digest> unlinks the blob from <name>: GET and
-- HEAD there answer BLOB_UNKNOWN until it is uploaded or mounted there again.
-- The hold's storage is shared and content-addressed, so the bytes stay
-- while any of the owner's manifests names them.

CREATE TABLE IF NOT EXISTS blob_unlinks (
  owner_did   TEXT NOT NULL,
  repository  TEXT NOT NULL,
  digest      TEXT NOT NULL,
  unlinked_at INTEGER NOT NULL,
  PRIMARY KEY (owner_did, repository, digest)
);

UPDATE meta SET value = '2' WHERE key = 'schema_version';
