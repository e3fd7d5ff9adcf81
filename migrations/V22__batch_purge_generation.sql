-- Each time a batch's runs let seeds go, its generation moves on: a pass that looked at the
-- batch before (and found its file must stay) clears the flag only if nothing moved since.
ALTER TABLE batches ADD COLUMN seeds_purge_generation integer NOT NULL DEFAULT 0;
