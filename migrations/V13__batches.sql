-- Batches: one NDJSON file of seeds turned into one run per line. The fan-out reads the file
-- from `fanout_offset` (bytes) / `fanout_line` (lines read) on; each chunk's runs, seeds, line
-- errors and run messages are written in one transaction with the cursor's advance, so a
-- fan-out that dies resumes exactly where its last chunk committed (no gap, no duplicate:
-- run ids are derived from (batch, line) and unique besides).
CREATE TABLE batches (
    id                     uuid PRIMARY KEY,
    merchant_id            uuid NOT NULL REFERENCES merchants (id),
    configuration_id       uuid NOT NULL,
    -- As asked at create (NULL: the current version), pinned to a version at start.
    configuration_version  integer,
    status                 text NOT NULL DEFAULT 'created'
                           CHECK (status IN ('created', 'running', 'completed', 'cancelled', 'failed')),
    fail_fast              boolean NOT NULL DEFAULT false,
    seeds_key              text NOT NULL UNIQUE,
    seeds_bytes            bigint CHECK (seeds_bytes >= 0),
    -- The seeds file's ETag at start: every read of the fan-out asks for exactly that object
    -- (a PUT to the upload URL after the start cannot change what the batch reads).
    seeds_etag             text,
    fanout_offset          bigint NOT NULL DEFAULT 0 CHECK (fanout_offset >= 0),
    fanout_line            integer NOT NULL DEFAULT 0 CHECK (fanout_line >= 0),
    fanout_done            boolean NOT NULL DEFAULT false,
    -- The last time a fan-out made progress: a fan-out silent for long is started again.
    fanout_at              timestamptz,
    runs_total             integer NOT NULL DEFAULT 0 CHECK (runs_total >= 0),
    errors_total           integer NOT NULL DEFAULT 0 CHECK (errors_total >= 0),
    -- Why the batch failed as a whole (`{code, message, line?}`).
    error                  jsonb,
    -- A finisher's lease: who builds the batch manifest holds it until then.
    finishing_until        timestamptz,
    merkle_root            text CHECK (merkle_root ~ '^[0-9a-f]{64}$'),
    manifest_key           text,
    manifest_sha256        text CHECK (manifest_sha256 ~ '^[0-9a-f]{64}$'),
    -- The small statement the signature covers (the manifest's SHA-256, tree and totals): a
    -- 100,000-run manifest is too large to send to the signer itself.
    manifest_statement     text,
    manifest_signature     text,
    manifest_key_id        text,
    created_by             text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    cancelled_at           timestamptz,
    finished_at            timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, id),
    FOREIGN KEY (merchant_id, configuration_id) REFERENCES configurations (merchant_id, id),
    CHECK ((status IN ('completed', 'cancelled', 'failed')) = (finished_at IS NOT NULL)),
    CHECK (status = 'created' OR started_at IS NOT NULL),
    CHECK (status = 'created' OR configuration_version IS NOT NULL),
    -- No batch ends without its signed manifest (a failed one lists what ran before it failed).
    CHECK (finished_at IS NULL OR (manifest_key IS NOT NULL AND manifest_sha256 IS NOT NULL
                                   AND manifest_statement IS NOT NULL
                                   AND manifest_signature IS NOT NULL AND merkle_root IS NOT NULL))
);
CREATE INDEX batches_by_merchant ON batches (merchant_id, created_at DESC, id DESC);
CREATE INDEX batches_running ON batches (merchant_id) WHERE status = 'running';

-- Lines that became no run, by line number (1-based, as an editor shows them).
CREATE TABLE batch_errors (
    batch_id  uuid NOT NULL REFERENCES batches (id),
    line      integer NOT NULL CHECK (line >= 1),
    code      text NOT NULL,
    message   text NOT NULL,
    details   jsonb,
    PRIMARY KEY (batch_id, line)
);

ALTER TABLE bundle_runs
    ADD COLUMN batch_id uuid,
    ADD COLUMN batch_line integer CHECK (batch_line >= 1),
    ADD FOREIGN KEY (merchant_id, batch_id) REFERENCES batches (merchant_id, id),
    ADD CHECK ((batch_id IS NULL) = (batch_line IS NULL)),
    ADD CHECK ((triggered_by_type = 'batch') = (batch_id IS NOT NULL)),
    DROP CONSTRAINT bundle_runs_triggered_by_type_check,
    ADD CONSTRAINT bundle_runs_triggered_by_type_check
        CHECK (triggered_by_type IN ('user', 'webhook', 'replay', 'batch'));
CREATE UNIQUE INDEX bundle_runs_by_batch_line ON bundle_runs (batch_id, batch_line)
    WHERE batch_id IS NOT NULL;
CREATE INDEX bundle_runs_by_batch_status ON bundle_runs (batch_id, status)
    WHERE batch_id IS NOT NULL;
