-- When the sweep last sent a delivery's message again: a delivery is re-sent at most once per
-- few minutes however long the queue takes, and keeps its token (so a message stuck in a
-- backlog still counts when it arrives).
ALTER TABLE webhook_deliveries ADD COLUMN swept_at timestamptz;
