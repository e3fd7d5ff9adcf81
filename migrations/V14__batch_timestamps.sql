-- A batch's RFC 3161 time-stamp: the TSA's answer over the SHA-256 of its signed statement
-- (which names the batch manifest, and so every run's manifest), stored beside the manifest
-- when a time-stamping authority is configured. A batch's runs are time-stamped through it,
-- not one by one.
ALTER TABLE batches
  ADD COLUMN timestamp_key text;
