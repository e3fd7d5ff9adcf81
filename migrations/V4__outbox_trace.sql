-- The X-Ray trace of the request that caused an event (`AWSTraceHeader` of its queue message),
-- so that a relayed event continues the same trace as one published at once.
-- A nullable column without a default and a NOT VALID check: no rewrite and no scan of the
-- (never pruned) outbox under the exclusive lock while the previous release still launches;
-- every existing row is NULL, so there is nothing to validate.
ALTER TABLE outbox ADD COLUMN trace_header text;
ALTER TABLE outbox ADD CONSTRAINT outbox_trace_header_plain
    CHECK (length(trace_header) <= 256 AND trace_header ~ '^[A-Za-z0-9=;:._-]+$') NOT VALID;
