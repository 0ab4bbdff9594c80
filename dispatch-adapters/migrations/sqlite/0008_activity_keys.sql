-- Idempotency keys of activities: a retried callback with the same key is answered with the
-- activity already stored instead of being stored twice.

ALTER TABLE dispatch_activity ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX dispatch_activity_key ON dispatch_activity (issue_id, idempotency_key);
