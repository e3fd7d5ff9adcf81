-- A batch whose runs let seeds go (retention or erasure) is due a look at its seeds file: the
-- retention pass checks only those, not every ended batch on every pass.
ALTER TABLE batches ADD COLUMN seeds_purge_due boolean NOT NULL DEFAULT false;
CREATE INDEX batches_seeds_purge_due ON batches (id) WHERE seeds_purge_due;

-- Failed runs may have stored artefacts before they failed: deleted once their seed goes.
CREATE INDEX bundle_runs_failed_to_purge ON bundle_runs (seed_released_at)
    WHERE status = 'failed' AND seed_released_at IS NOT NULL AND artefacts_purged_at IS NULL;

-- `expired_at` and `expired_by` go together, and only with `expired`.
ALTER TABLE bundle_runs
  DROP CONSTRAINT bundle_runs_expired_check,
  ADD CONSTRAINT bundle_runs_expired_check
      CHECK ((status = 'expired') = (expired_at IS NOT NULL)
             AND (expired_at IS NULL) = (expired_by IS NULL)) NOT VALID;

-- An erasure confirms the number of runs it matched; one that matches more when executed is
-- cancelled (request it again), and so is one too large to execute at once. Each attempt is
-- time-stamped, so one that waits does not hold the others back.
ALTER TABLE erasures
  ADD COLUMN confirmed_runs integer CHECK (confirmed_runs >= 0),
  ADD COLUMN attempted_at timestamptz,
  DROP CONSTRAINT erasures_status_check,
  ADD CONSTRAINT erasures_status_check CHECK (status IN ('pending', 'completed', 'cancelled'));
CREATE INDEX erasures_due ON erasures (attempted_at NULLS FIRST, created_at)
    WHERE status = 'pending';

-- A matched run whose artefacts retention had already deleted.
ALTER TABLE erasure_items
  DROP CONSTRAINT erasure_items_outcome_check,
  ADD CONSTRAINT erasure_items_outcome_check
      CHECK (outcome IN ('erased', 'already_expired', 'kept_held'));
CREATE INDEX erasure_items_by_run ON erasure_items (run_id);
