-- A long history (a log published for the first time, or after a long outage) is published a
-- chunk of full tiles per pass, its checkpoint once every tile it covers is there: the entries
-- whose tiles are written so far, ahead of the published checkpoint.
ALTER TABLE transparency_logs
  ADD COLUMN tiles_through bigint NOT NULL DEFAULT 0 CHECK (tiles_through >= 0);
