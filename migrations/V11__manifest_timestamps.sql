-- A manifest's RFC 3161 time-stamp (the TSA's answer over the manifest's SHA-256), stored as
-- `manifest.tsr` beside it when a time-stamping authority is configured.
ALTER TABLE manifests
  ADD COLUMN timestamp_key text;
