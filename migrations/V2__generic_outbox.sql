-- The outbox carries any event, not only run messages: each row names its kind (for people and
-- logs) and its destination (the queue the relay sends the payload to). The relay reads only the
-- destination and the payload, so a new kind of event needs no change to the relay.
ALTER TABLE outbox ADD COLUMN kind text;
ALTER TABLE outbox ADD COLUMN destination text;
UPDATE outbox SET kind = 'run.queued', destination = 'runs';
ALTER TABLE outbox ALTER COLUMN kind SET NOT NULL;
ALTER TABLE outbox ALTER COLUMN destination SET NOT NULL;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_plain CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$');
ALTER TABLE outbox ADD CONSTRAINT outbox_destination_plain CHECK (destination ~ '^[a-z][a-z0-9_-]{0,63}$');
-- Events about something other than a run leave it empty.
ALTER TABLE outbox ALTER COLUMN run_id DROP NOT NULL;
