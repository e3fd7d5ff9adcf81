-- The log sequences in batches: completing a run records its entry as pending, in the same
-- transaction (no row lock on the merchant's log); the sequencer integrates each merchant's
-- pending entries in one transaction per pass (dense indexes in the order they were queued),
-- then the checkpoint job signs. A completed run is in the log or pending.
CREATE TABLE transparency_pending (
    run_id       uuid PRIMARY KEY,
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    leaf         bytea NOT NULL CHECK (length(leaf) = 32),
    queued_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id)
);
CREATE INDEX transparency_pending_order ON transparency_pending (merchant_id, queued_at, run_id);

CREATE OR REPLACE FUNCTION completed_run_is_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed'
       AND NOT EXISTS (SELECT 1 FROM transparency_entries WHERE run_id = NEW.id)
       AND NOT EXISTS (SELECT 1 FROM transparency_pending WHERE run_id = NEW.id) THEN
        RAISE EXCEPTION 'run % cannot be completed without its transparency log entry', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
