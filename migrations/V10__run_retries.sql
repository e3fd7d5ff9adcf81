-- While a run is retried after a transient fault: why (its last attempt's error) and when the
-- next attempt is due. Shown on the run; cleared (the due time) when the run ends.
ALTER TABLE bundle_runs
  ADD COLUMN last_error jsonb,
  ADD COLUMN next_attempt_at timestamptz;
