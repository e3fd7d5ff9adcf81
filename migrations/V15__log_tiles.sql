-- Each merchant's log is also published as C2SP tlog-tiles (hash tiles, entry bundles with each
-- run's manifest bytes, and the signed checkpoint) under its own prefix in object storage. The
-- size the published checkpoint covers: the next publication writes only what grew since. A
-- publication that failed is tried again after a back-off (doubling, at most an hour), so a log
-- whose entries cannot be read does not cost every pass its reads and writes.
ALTER TABLE transparency_logs
  ADD COLUMN published_size bigint NOT NULL DEFAULT 0 CHECK (published_size >= 0),
  ADD COLUMN publish_failures integer NOT NULL DEFAULT 0 CHECK (publish_failures >= 0),
  ADD COLUMN publish_retry_at timestamptz;
