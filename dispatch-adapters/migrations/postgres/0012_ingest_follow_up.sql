-- An error event's ingest committed but could not finish its follow-up steps (recurrence check,
-- regression, spawn): the link owes them, and the sweeper finishes them from the stored link.
-- One row per link; `owed_at` is when the newest unfinished ingest committed.

CREATE TABLE dispatch_ingest_follow_up (
    link_id UUID PRIMARY KEY REFERENCES dispatch_error_link(id) ON DELETE CASCADE,
    owed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dispatch_ingest_follow_up_owed ON dispatch_ingest_follow_up (owed_at);
