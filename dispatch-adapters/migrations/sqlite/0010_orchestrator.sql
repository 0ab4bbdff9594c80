-- Orchestrator chat sessions (the conversation in the Messages API's shape, and the turn that
-- holds the session) and the dispatch proposals made in them, waiting for the person.

CREATE TABLE dispatch_orchestrator_session (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    updated_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX dispatch_orchestrator_session_recent ON dispatch_orchestrator_session (workspace_id, updated_at DESC);

CREATE TABLE dispatch_orchestrator_proposal (
    id BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES dispatch_orchestrator_session(id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX dispatch_orchestrator_proposal_session ON dispatch_orchestrator_proposal (session_id, id);

CREATE INDEX dispatch_run_kind_recent ON dispatch_run (kind, created_at DESC) WHERE cost_usd > 0;
