-- Completion webhooks: endpoints a merchant registers, and one delivery per (endpoint, run,
-- event), recorded in the transaction that finishes the run and sent by the dispatcher.

CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    merchant_id      uuid NOT NULL REFERENCES merchants (id),
    url              text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    events           text[] NOT NULL CHECK (cardinality(events) BETWEEN 1 AND 10),
    description      text CHECK (length(description) <= 500),
    enabled          boolean NOT NULL DEFAULT true,
    -- Why it is disabled, when the service disabled it (an endpoint failing for too long).
    disabled_reason  text,
    -- The first failed attempt of the current streak of failures; NULL after a success.
    failing_since    timestamptz,
    created_by       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, id)
);
CREATE INDEX webhook_endpoints_by_merchant ON webhook_endpoints (merchant_id, created_at DESC, id DESC);

CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    endpoint_id      uuid NOT NULL,
    merchant_id      uuid NOT NULL,
    run_id           uuid NOT NULL,
    event_type       text NOT NULL,
    -- The exact body sent (and signed) on every attempt.
    payload          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When the next attempt is due (an attempt in flight holds it as a lease).
    next_attempt_at  timestamptz,
    -- The queue message that may make the next attempt: any other is stale and dropped.
    dispatch_token   uuid NOT NULL,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_response    text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (merchant_id, endpoint_id) REFERENCES webhook_endpoints (merchant_id, id) ON DELETE CASCADE,
    UNIQUE (endpoint_id, run_id, event_type),
    CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
