-- Pull requests linked to issues (the original's dispatch_issue_pr) and the agents registry
-- (dispatch_agent). The document column holds the whole value; the other columns are keys.

CREATE TABLE dispatch_issue_pr (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    pr_number BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL,
    UNIQUE (issue_id, pr_number)
);
CREATE INDEX dispatch_issue_pr_number ON dispatch_issue_pr (pr_number);
CREATE INDEX dispatch_issue_pr_issue ON dispatch_issue_pr (issue_id, created_at DESC);

CREATE TABLE dispatch_agent (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name_key TEXT NOT NULL,
    doc JSONB NOT NULL,
    UNIQUE (workspace_id, name_key)
);
