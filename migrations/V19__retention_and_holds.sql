-- Retention: how long a run's artefacts and seed are kept, pinned with each configuration
-- version (an ISO 8601 duration the service has checked against its bounds; NULL = for ever).
-- Versions saved before this keep everything for ever (versions are immutable).
ALTER TABLE configuration_versions
  ADD COLUMN artefacts_retention text
      CHECK (artefacts_retention ~ '^P([0-9]+Y)?([0-9]+M)?([0-9]+W)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?$'),
  ADD COLUMN seeds_retention text
      CHECK (seeds_retention ~ '^P([0-9]+Y)?([0-9]+M)?([0-9]+W)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?$');

-- A run's expiry, computed when it ends from its version's retention; `expired` once its
-- artefacts are gone (by retention or by an erasure), its manifest and log entry kept.
ALTER TABLE bundle_runs
  ADD COLUMN expires_at timestamptz,
  ADD COLUMN seed_expires_at timestamptz,
  ADD COLUMN expired_at timestamptz,
  ADD COLUMN expired_by text CHECK (expired_by IN ('retention', 'erasure')),
  -- The run no longer needs its seed (its seed retention passed, unheld): the seed goes
  -- once no run needs it.
  ADD COLUMN seed_released_at timestamptz,
  -- Every version of every artefact object deleted from storage.
  ADD COLUMN artefacts_purged_at timestamptz,
  DROP CONSTRAINT bundle_runs_status_check,
  ADD CONSTRAINT bundle_runs_status_check
      CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'expired')),
  DROP CONSTRAINT bundle_runs_check1,
  ADD CONSTRAINT bundle_runs_check1
      CHECK ((status IN ('completed', 'failed', 'expired')) = (completed_at IS NOT NULL)),
  ADD CONSTRAINT bundle_runs_expired_check
      CHECK ((status = 'expired') = (expired_at IS NOT NULL AND expired_by IS NOT NULL))
      NOT VALID;

-- Status only moves forward: `expired` only from `completed`, and nothing after it.
CREATE OR REPLACE FUNCTION run_status_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rank_old integer := CASE OLD.status WHEN 'pending' THEN 0 WHEN 'processing' THEN 1
                                        WHEN 'expired' THEN 3 ELSE 2 END;
    rank_new integer := CASE NEW.status WHEN 'pending' THEN 0 WHEN 'processing' THEN 1
                                        WHEN 'expired' THEN 3 ELSE 2 END;
BEGIN
    IF NEW.status = OLD.status THEN
        RETURN NEW;
    END IF;
    IF rank_new < rank_old
       OR (rank_old >= 2 AND NOT (OLD.status = 'completed' AND NEW.status = 'expired')) THEN
        RAISE EXCEPTION 'run % cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

-- A run's expiry is computed when it ends, from its version's retention, whichever statement
-- ends it (the worker, a failure, the stalled-run sweep, a batch's cancellation).
CREATE FUNCTION run_expiry_from_retention() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept_artefacts text;
    kept_seed text;
BEGIN
    IF NEW.status IN ('completed', 'failed') AND OLD.status IN ('pending', 'processing') THEN
        SELECT artefacts_retention, seeds_retention INTO kept_artefacts, kept_seed
          FROM configuration_versions
         WHERE configuration_id = NEW.configuration_id AND version = NEW.configuration_version;
        IF NEW.status = 'completed' THEN
            NEW.expires_at := NEW.completed_at + kept_artefacts::interval;
        END IF;
        NEW.seed_expires_at := NEW.completed_at + kept_seed::interval;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bundle_runs_expiry
    BEFORE UPDATE OF status ON bundle_runs
    FOR EACH ROW EXECUTE FUNCTION run_expiry_from_retention();

CREATE INDEX bundle_runs_due_to_expire ON bundle_runs (expires_at)
    WHERE status = 'completed' AND expires_at IS NOT NULL;
CREATE INDEX bundle_runs_seed_due ON bundle_runs (seed_expires_at)
    WHERE seed_released_at IS NULL AND seed_expires_at IS NOT NULL;
CREATE INDEX bundle_runs_to_purge ON bundle_runs (expired_at)
    WHERE status = 'expired' AND artefacts_purged_at IS NULL;
CREATE INDEX bundle_runs_by_seed ON bundle_runs (merchant_id, seed_hash);

-- A seed is erased by forgetting its content: the row stays (runs name it by hash), its
-- canonical JSON goes. The same seed sent again is stored again (its hash proves the bytes).
ALTER TABLE seeds
  ALTER COLUMN canonical DROP NOT NULL,
  ADD COLUMN erased_at timestamptz,
  ADD CONSTRAINT seeds_erased_check CHECK ((erased_at IS NULL) = (canonical IS NOT NULL));

DROP TRIGGER seeds_immutable ON seeds;
CREATE FUNCTION seeds_only_erased_or_restored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'seeds rows are never deleted (erase their content)'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.merchant_id IS DISTINCT FROM OLD.merchant_id OR NEW.hash IS DISTINCT FROM OLD.hash
       OR NEW.created_at IS DISTINCT FROM OLD.created_at
       OR NEW.size_bytes IS DISTINCT FROM OLD.size_bytes THEN
        RAISE EXCEPTION 'seeds rows are immutable' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.canonical IS NOT NULL AND NEW.canonical IS NULL THEN
        RETURN NEW; -- erased
    END IF;
    IF OLD.canonical IS NULL AND NEW.canonical IS NOT NULL
       AND encode(sha256(convert_to(NEW.canonical, 'UTF8')), 'hex') = OLD.hash THEN
        RETURN NEW; -- stored again, byte for byte what the hash says
    END IF;
    RAISE EXCEPTION 'seeds rows are immutable' USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER seeds_immutable
    BEFORE UPDATE OR DELETE ON seeds
    FOR EACH ROW EXECUTE FUNCTION seeds_only_erased_or_restored();

-- Legal holds: while one is in force on a run, its batch or its configuration, the run
-- neither expires nor is erased. Holds are an audit trail: never deleted, released once.
CREATE TABLE legal_holds (
    id                uuid PRIMARY KEY,
    merchant_id       uuid NOT NULL REFERENCES merchants (id),
    run_id            uuid,
    batch_id          uuid,
    configuration_id  uuid,
    reason            text NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    placed_by         text NOT NULL,
    by_platform       boolean NOT NULL,
    placed_at         timestamptz NOT NULL DEFAULT now(),
    released_by       text,
    released_at       timestamptz,
    CHECK (num_nonnulls(run_id, batch_id, configuration_id) = 1),
    CHECK ((released_by IS NULL) = (released_at IS NULL)),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id),
    FOREIGN KEY (merchant_id, batch_id) REFERENCES batches (merchant_id, id),
    FOREIGN KEY (merchant_id, configuration_id) REFERENCES configurations (merchant_id, id)
);
CREATE INDEX legal_holds_by_merchant ON legal_holds (merchant_id, placed_at DESC, id DESC);
CREATE INDEX legal_holds_on_runs ON legal_holds (run_id) WHERE released_at IS NULL AND run_id IS NOT NULL;
CREATE INDEX legal_holds_on_batches ON legal_holds (batch_id) WHERE released_at IS NULL AND batch_id IS NOT NULL;
CREATE INDEX legal_holds_on_configurations ON legal_holds (configuration_id)
    WHERE released_at IS NULL AND configuration_id IS NOT NULL;

CREATE FUNCTION legal_hold_released_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.released_at IS NOT NULL
       OR (to_jsonb(NEW) - 'released_by' - 'released_at')
          IS DISTINCT FROM (to_jsonb(OLD) - 'released_by' - 'released_at') THEN
        RAISE EXCEPTION 'legal holds are only released, once' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER legal_holds_audit
    BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION legal_hold_released_once();

-- A batch's seeds file and its line errors (which quote the lines) go with its runs' seeds.
ALTER TABLE batches ADD COLUMN seeds_purged_at timestamptz;
