-- The X-Ray trace of the request that caused an event (`AWSTraceHeader` of its queue message),
-- so that a relayed event continues the same trace as one published at once.
ALTER TABLE outbox ADD COLUMN trace_header text
    CHECK (length(trace_header) <= 256 AND trace_header ~ '^[A-Za-z0-9=;:._-]+$');
