-- A customer's people who report issues from chat (the original's dispatch_customer_user); the
-- issue names its reporter in its document (`reporter_id`).

CREATE TABLE dispatch_customer_user (
    id BLOB PRIMARY KEY,
    customer_id BLOB NOT NULL REFERENCES dispatch_customer(id) ON DELETE CASCADE,
    slack_user_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (customer_id, slack_user_id)
);
