-- Erasure on request: of one run, of a seed (by hash), or of every run whose seed holds a value
-- at a JSON pointer. Executed in the background; what it erased and kept is recorded item by
-- item, and a signed receipt (in parts) is appended to the merchant's transparency log.
CREATE TABLE erasures (
    id             uuid PRIMARY KEY,
    merchant_id    uuid NOT NULL REFERENCES merchants (id),
    kind           text NOT NULL CHECK (kind IN ('run', 'seed', 'match')),
    run_id         uuid,
    seed_hash      text CHECK (seed_hash ~ '^[0-9a-f]{64}$'),
    pointer        text,
    -- The value matched: personal data itself, forgotten once the erasure is done.
    match_value    jsonb,
    requested_by   text NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed')),
    runs_erased    integer,
    runs_kept      integer,
    seeds_erased   integer,
    seeds_kept     integer,
    -- Why the last attempt did not finish (a run still in flight, a dependency).
    waiting_for    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    completed_at   timestamptz,
    UNIQUE (merchant_id, id),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CHECK ((kind = 'run') = (run_id IS NOT NULL)),
    CHECK ((kind = 'seed') = (seed_hash IS NOT NULL)),
    CHECK ((kind = 'match') = (pointer IS NOT NULL)),
    CHECK (status = 'pending' OR match_value IS NULL)
);
CREATE INDEX erasures_by_merchant ON erasures (merchant_id, created_at DESC, id DESC);
CREATE INDEX erasures_pending ON erasures (created_at) WHERE status = 'pending';

CREATE TABLE erasure_items (
    erasure_id  uuid NOT NULL REFERENCES erasures (id),
    run_id      uuid NOT NULL,
    seed_hash   text NOT NULL,
    -- erased: the run's artefacts (and, unless another run keeps it, its seed) are gone;
    -- kept_held: a legal hold keeps the run.
    outcome     text NOT NULL CHECK (outcome IN ('erased', 'kept_held')),
    PRIMARY KEY (erasure_id, run_id)
);

CREATE TABLE erasure_receipts (
    -- The id of its entry in the merchant's transparency log.
    id           uuid PRIMARY KEY,
    erasure_id   uuid NOT NULL REFERENCES erasures (id),
    merchant_id  uuid NOT NULL,
    part         integer NOT NULL CHECK (part >= 1),
    parts        integer NOT NULL CHECK (parts >= part),
    object_key   text NOT NULL UNIQUE,
    sha256       text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    signature    text NOT NULL CHECK (length(signature) > 0),
    key_id       text NOT NULL CHECK (length(key_id) > 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (erasure_id, part),
    FOREIGN KEY (merchant_id, erasure_id) REFERENCES erasures (merchant_id, id)
);
CREATE TRIGGER erasure_receipts_immutable
    BEFORE UPDATE OR DELETE ON erasure_receipts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- A log entry is a run's manifest or a part of an erasure receipt: `run_id` is the entry's id,
-- which names one or the other (the foreign key to runs becomes this check).
ALTER TABLE transparency_entries DROP CONSTRAINT transparency_entries_merchant_id_run_id_fkey;
ALTER TABLE transparency_pending DROP CONSTRAINT transparency_pending_merchant_id_run_id_fkey;
COMMENT ON COLUMN transparency_entries.run_id IS
    'the entry''s id: a run''s (its manifest) or an erasure receipt part''s';

CREATE FUNCTION log_entry_names_a_manifest_or_receipt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM bundle_runs WHERE merchant_id = NEW.merchant_id AND id = NEW.run_id)
       AND NOT EXISTS (SELECT 1 FROM erasure_receipts
                        WHERE merchant_id = NEW.merchant_id AND id = NEW.run_id) THEN
        RAISE EXCEPTION 'log entry % names neither a run nor an erasure receipt of merchant %',
            NEW.run_id, NEW.merchant_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER transparency_entries_names_its_content
    AFTER INSERT ON transparency_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION log_entry_names_a_manifest_or_receipt();
CREATE CONSTRAINT TRIGGER transparency_pending_names_its_content
    AFTER INSERT ON transparency_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION log_entry_names_a_manifest_or_receipt();
