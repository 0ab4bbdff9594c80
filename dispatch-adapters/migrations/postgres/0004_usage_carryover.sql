-- Spawn counts and cost of runs whose issue was deleted, per UTC day and budget bucket: the daily
-- budgets and the cost limit keep counting them (deleting an issue refunds nothing).

CREATE TABLE dispatch_usage_carryover (
    day TIMESTAMPTZ NOT NULL,
    bucket TEXT NOT NULL,
    runs BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, bucket)
);
