-- No `completed` without its entry in the merchant's transparency log, from now on (runs that
-- completed before the log existed have none): checked at commit, like the manifest.
CREATE FUNCTION completed_run_is_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed'
       AND NOT EXISTS (SELECT 1 FROM transparency_entries WHERE run_id = NEW.id) THEN
        RAISE EXCEPTION 'run % cannot be completed without its transparency log entry', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER bundle_runs_completed_needs_log_entry
    AFTER UPDATE OF status ON bundle_runs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION completed_run_is_logged();
