-- A publication of a log's tiles that failed is tried again after a back-off (30 s, doubling
-- with each failure in a row, at most an hour), so a log whose entries cannot be read does not
-- cost every pass its reads and writes.
ALTER TABLE transparency_logs
  ADD COLUMN publish_failures integer NOT NULL DEFAULT 0 CHECK (publish_failures >= 0),
  ADD COLUMN publish_retry_at timestamptz;
