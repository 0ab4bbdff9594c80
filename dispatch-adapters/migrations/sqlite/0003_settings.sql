-- Operational settings every process reads from the store (the kill switch), so that a change
-- made through one replica holds on all of them.

CREATE TABLE dispatch_setting (
    key TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
