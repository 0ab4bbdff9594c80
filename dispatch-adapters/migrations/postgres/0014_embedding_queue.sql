-- Owed embeddings: an issue created, or whose title or description changed, owes an embedding,
-- marked here by triggers in the transaction of the write. The embedding worker claims due rows
-- (a lease in `not_before`, FOR NO KEY UPDATE SKIP LOCKED), and settles a claim by deleting the
-- row only if `generation` is still the one it claimed (an edit meanwhile bumps it). Failures
-- count `attempts` and push `not_before` out. NULL `not_before`: due now.
--
-- Vectors stay `real[]` (dispatch_embedding.vector, 0001): the size is the embedder's, known at
-- start-up only, and a `vector(n)` column would need it. With the `vector` extension (feature
-- `pgvector`) nearest-neighbour queries cast to `vector` and order by `<=>` in the database.
CREATE TABLE dispatch_embedding_queue (
    issue_id UUID PRIMARY KEY REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    generation BIGINT NOT NULL DEFAULT 1,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before TIMESTAMPTZ
);
CREATE INDEX dispatch_embedding_queue_due ON dispatch_embedding_queue (not_before);

CREATE FUNCTION dispatch_embedding_owed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO dispatch_embedding_queue (issue_id) VALUES (NEW.id) ON CONFLICT (issue_id) DO UPDATE SET generation = dispatch_embedding_queue.generation + 1, attempts = 0, not_before = NULL; RETURN NULL; END $$;

CREATE TRIGGER dispatch_embedding_owed_insert AFTER INSERT ON dispatch_issue
FOR EACH ROW EXECUTE FUNCTION dispatch_embedding_owed();

CREATE TRIGGER dispatch_embedding_owed_update AFTER UPDATE OF title, description ON dispatch_issue
FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.description IS DISTINCT FROM NEW.description)
EXECUTE FUNCTION dispatch_embedding_owed();

-- Issues from before: owed unless they have a vector (the worker re-marks vectors of another
-- model or size at start).
INSERT INTO dispatch_embedding_queue (issue_id)
SELECT id FROM dispatch_issue i WHERE NOT EXISTS (SELECT 1 FROM dispatch_embedding e WHERE e.issue_id = i.id);
