-- The outbox: Slack notifications and outbound webhooks, stored by the request that caused them
-- and sent by the delivery worker (claimed with a lease and a fencing token, retried with
-- backoff). Rows stay after delivery: a Slack post's `ts` (in `doc`) threads later replies, and
-- webhook deliveries are shown with their status and response code.

CREATE TABLE dispatch_outbox (
    id BLOB PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    event TEXT NOT NULL,
    issue_id BLOB,
    after_key TEXT,
    due_at INTEGER NOT NULL,
    lease_until INTEGER,
    lease_token BLOB,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX dispatch_outbox_due ON dispatch_outbox (kind, due_at) WHERE state = 'pending';
CREATE INDEX dispatch_outbox_recent ON dispatch_outbox (created_at DESC, id DESC);
CREATE INDEX dispatch_outbox_issue ON dispatch_outbox (issue_id, created_at DESC);
