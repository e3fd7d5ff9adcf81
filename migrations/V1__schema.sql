-- The whole schema of the service. Every table that belongs to a tenant carries merchant_id,
-- and cross-table references include it, so that no row can point at another merchant's data.

CREATE TABLE merchants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE configurations (
    id               uuid PRIMARY KEY,
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    name             text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description      text CHECK (length(description) <= 2000),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    current_version  integer NOT NULL CHECK (current_version >= 1),
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    archived_at      timestamptz,
    CHECK ((status = 'archived') = (archived_at IS NOT NULL)),
    UNIQUE (merchant_id, id)
);
CREATE INDEX configurations_by_merchant ON configurations (merchant_id, created_at DESC, id DESC);
CREATE INDEX configurations_by_name ON configurations (merchant_id, name text_pattern_ops);

-- Immutable: a change to a configuration is a new row here.
CREATE TABLE configuration_versions (
    configuration_id  uuid NOT NULL,
    version           integer NOT NULL CHECK (version >= 1),
    merchant_id       uuid NOT NULL,
    name              text NOT NULL,
    description       text,
    documents         jsonb NOT NULL CHECK (jsonb_typeof(documents) = 'array'),
    data_schema       jsonb,
    defaults          jsonb CHECK (defaults IS NULL OR jsonb_typeof(defaults) = 'object'),
    triggers          text[] NOT NULL DEFAULT '{}',
    archive           boolean NOT NULL DEFAULT false,
    created_by        text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (configuration_id, version),
    FOREIGN KEY (merchant_id, configuration_id) REFERENCES configurations (merchant_id, id)
);
CREATE INDEX configuration_versions_triggers ON configuration_versions USING gin (triggers);

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER configuration_versions_immutable
    BEFORE UPDATE OR DELETE ON configuration_versions
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Seeds are content-addressed: hash = lowercase hex SHA-256 of the RFC 8785 canonical JSON,
-- which is what `canonical` holds, byte for byte.
CREATE TABLE seeds (
    merchant_id  uuid NOT NULL REFERENCES merchants (id),
    hash         text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    canonical    text NOT NULL,
    size_bytes   integer NOT NULL CHECK (size_bytes >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, hash)
);
CREATE TRIGGER seeds_immutable
    BEFORE UPDATE ON seeds
    FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE TABLE bundle_runs (
    id                     uuid PRIMARY KEY,
    merchant_id            uuid NOT NULL REFERENCES merchants (id),
    configuration_id       uuid NOT NULL,
    configuration_version  integer NOT NULL,
    seed_hash              text NOT NULL,
    status                 text NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    triggered_by_type      text NOT NULL CHECK (triggered_by_type IN ('user', 'webhook', 'replay')),
    triggered_by_id        text NOT NULL,
    run_parameters         jsonb NOT NULL DEFAULT '{}'::jsonb,
    replay_of              uuid,
    attempts               integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    error                  jsonb,
    created_at             timestamptz NOT NULL DEFAULT now(),
    started_at             timestamptz,
    completed_at           timestamptz,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, id),
    FOREIGN KEY (merchant_id, configuration_id) REFERENCES configurations (merchant_id, id),
    FOREIGN KEY (configuration_id, configuration_version)
        REFERENCES configuration_versions (configuration_id, version),
    FOREIGN KEY (merchant_id, seed_hash) REFERENCES seeds (merchant_id, hash),
    FOREIGN KEY (merchant_id, replay_of) REFERENCES bundle_runs (merchant_id, id),
    CHECK ((triggered_by_type = 'replay') = (replay_of IS NOT NULL)),
    CHECK ((status IN ('completed', 'failed')) = (completed_at IS NOT NULL)),
    CHECK ((status = 'failed') = (error IS NOT NULL)),
    CHECK (status = 'pending' OR started_at IS NOT NULL)
);
CREATE INDEX bundle_runs_by_merchant ON bundle_runs (merchant_id, created_at DESC, id DESC);
CREATE INDEX bundle_runs_by_configuration ON bundle_runs (configuration_id, created_at DESC, id DESC);

-- One manifest per run, written before the run may be marked completed.
CREATE TABLE manifests (
    run_id         uuid PRIMARY KEY,
    merchant_id    uuid NOT NULL,
    object_key     text NOT NULL UNIQUE,
    sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    bundle_digest  text NOT NULL CHECK (bundle_digest ~ '^[0-9a-f]{64}$'),
    signature      text NOT NULL CHECK (length(signature) > 0),
    key_id         text NOT NULL CHECK (length(key_id) > 0),
    body           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id)
);

CREATE TABLE artefacts (
    run_id        uuid NOT NULL,
    merchant_id   uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    format        text NOT NULL CHECK (format IN ('html', 'md', 'txt', 'csv', 'json', 'pdf', 'zip')),
    content_type  text NOT NULL,
    object_key    text NOT NULL UNIQUE,
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, name),
    FOREIGN KEY (merchant_id, run_id) REFERENCES bundle_runs (merchant_id, id)
);

-- No `completed` without a signed manifest: checked at commit, so the worker can write the
-- manifest and flip the status in one transaction in either order.
CREATE FUNCTION completed_run_has_manifest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'completed'
       AND NOT EXISTS (SELECT 1 FROM manifests WHERE run_id = NEW.id) THEN
        RAISE EXCEPTION 'run % cannot be completed without a signed manifest', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER bundle_runs_completed_needs_manifest
    AFTER INSERT OR UPDATE OF status ON bundle_runs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION completed_run_has_manifest();

-- Status only moves forward.
CREATE FUNCTION run_status_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rank_old integer := CASE OLD.status WHEN 'pending' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END;
    rank_new integer := CASE NEW.status WHEN 'pending' THEN 0 WHEN 'processing' THEN 1 ELSE 2 END;
BEGIN
    IF rank_new < rank_old OR (rank_old = 2 AND NEW.status <> OLD.status) THEN
        RAISE EXCEPTION 'run % cannot move from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER bundle_runs_status_forward
    BEFORE UPDATE OF status ON bundle_runs
    FOR EACH ROW EXECUTE FUNCTION run_status_moves_forward();

CREATE TABLE webhook_sources (
    id                  uuid PRIMARY KEY,
    merchant_id         uuid NOT NULL REFERENCES merchants (id),
    name                text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    -- Vault KV holds the secrets; these say which versions verify and until when.
    secret_version      integer NOT NULL DEFAULT 1 CHECK (secret_version >= 1),
    previous_valid_until timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    disabled_at         timestamptz,
    CHECK ((status = 'disabled') = (disabled_at IS NOT NULL)),
    UNIQUE (merchant_id, id)
);
CREATE INDEX webhook_sources_by_merchant ON webhook_sources (merchant_id, created_at DESC, id DESC);

CREATE TABLE webhook_events (
    id              uuid PRIMARY KEY,
    source_id       uuid NOT NULL,
    merchant_id     uuid NOT NULL,
    webhook_id      text NOT NULL CHECK (length(webhook_id) BETWEEN 1 AND 255),
    event_type      text,
    body_sha256     text NOT NULL CHECK (body_sha256 ~ '^[0-9a-f]{64}$'),
    status          text NOT NULL DEFAULT 'received'
                    CHECK (status IN ('received', 'processed', 'rejected')),
    response        jsonb,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    UNIQUE (source_id, webhook_id),
    FOREIGN KEY (merchant_id, source_id) REFERENCES webhook_sources (merchant_id, id)
);

CREATE TABLE webhook_event_runs (
    event_id  uuid NOT NULL REFERENCES webhook_events (id),
    run_id    uuid NOT NULL REFERENCES bundle_runs (id),
    PRIMARY KEY (event_id, run_id)
);

-- Transactional outbox: written with the run, sent to SQS after commit; outbox-relay re-sends
-- rows whose send failed.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    run_id      uuid NOT NULL REFERENCES bundle_runs (id),
    payload     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error  text
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE idempotency_keys (
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    key              text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_sha256   text NOT NULL CHECK (request_sha256 ~ '^[0-9a-f]{64}$'),
    response_status  integer CHECK (response_status BETWEEN 100 AND 599),
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    CHECK (expires_at >= created_at + interval '24 hours'),
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
