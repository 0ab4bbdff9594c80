-- Owed embeddings: an issue created, or whose title or description changed, owes an embedding,
-- marked here by triggers in the transaction of the write. The embedding worker claims due rows
-- (a lease in `not_before`), and settles a claim by deleting the row only if `generation` is
-- still the one it claimed (an edit meanwhile bumps it). Failures count `attempts` and push
-- `not_before` out. NULL `not_before`: due now. Times are microseconds since the epoch.
CREATE TABLE dispatch_embedding_queue (
    issue_id BLOB PRIMARY KEY REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    generation INTEGER NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before INTEGER
);
CREATE INDEX dispatch_embedding_queue_due ON dispatch_embedding_queue (not_before);

CREATE TRIGGER dispatch_embedding_owed_insert AFTER INSERT ON dispatch_issue BEGIN
    INSERT INTO dispatch_embedding_queue (issue_id) VALUES (new.id)
    ON CONFLICT (issue_id) DO UPDATE SET generation = generation + 1, attempts = 0, not_before = NULL;
END;

CREATE TRIGGER dispatch_embedding_owed_update AFTER UPDATE OF title, description ON dispatch_issue
WHEN old.title IS NOT new.title OR old.description IS NOT new.description BEGIN
    INSERT INTO dispatch_embedding_queue (issue_id) VALUES (new.id)
    ON CONFLICT (issue_id) DO UPDATE SET generation = generation + 1, attempts = 0, not_before = NULL;
END;

-- Issues from before: owed unless they have a vector (the worker re-marks vectors of another
-- model or size at start).
INSERT INTO dispatch_embedding_queue (issue_id)
SELECT id FROM dispatch_issue WHERE id NOT IN (SELECT issue_id FROM dispatch_embedding);
