-- Each merchant's log is also published as C2SP tlog-tiles (hash tiles, entry bundles with each
-- run's manifest bytes, and the signed checkpoint) under its own prefix in object storage. The
-- size the published checkpoint covers: the next publication writes only what grew since.
ALTER TABLE transparency_logs
  ADD COLUMN published_size bigint NOT NULL DEFAULT 0 CHECK (published_size >= 0);
