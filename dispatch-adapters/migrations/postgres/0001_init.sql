-- Dispatch schema for PostgreSQL. Aggregates are stored as a JSON document (`doc`) next to the
-- columns that are filtered, ordered, locked or aggregated on; every write updates both.
CREATE TABLE dispatch_workspace (
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    issue_prefix TEXT NOT NULL UNIQUE,
    next_issue_number BIGINT NOT NULL DEFAULT 1,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE dispatch_column (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    color TEXT NOT NULL,
    position INTEGER NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('open', 'closed'))
);
CREATE INDEX dispatch_column_ws ON dispatch_column (workspace_id, position);

CREATE TABLE dispatch_label (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    color TEXT NOT NULL,
    UNIQUE (workspace_id, name_key)
);

CREATE TABLE dispatch_customer (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    portal_token TEXT NOT NULL UNIQUE,
    slack_channel_id TEXT UNIQUE,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL,
    UNIQUE (workspace_id, slug)
);

CREATE TABLE dispatch_issue (
    id UUID PRIMARY KEY,
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    identifier TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT,
    comments_text TEXT NOT NULL DEFAULT '',
    column_id UUID NOT NULL,
    customer_id UUID REFERENCES dispatch_customer(id) ON DELETE SET NULL,
    spawn_active BOOLEAN NOT NULL DEFAULT FALSE,
    version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL,
    search TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('simple', coalesce(description, '')), 'B') ||
        setweight(to_tsvector('simple', comments_text), 'C')
    ) STORED,
    UNIQUE (workspace_id, number)
);
CREATE INDEX dispatch_issue_column ON dispatch_issue (column_id);
CREATE INDEX dispatch_issue_customer ON dispatch_issue (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX dispatch_issue_search ON dispatch_issue USING GIN (search);

CREATE TABLE dispatch_comment (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    author TEXT,
    body TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dispatch_comment_issue ON dispatch_comment (issue_id, created_at);

CREATE TABLE dispatch_history (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX dispatch_history_issue ON dispatch_history (issue_id, created_at DESC);

CREATE TABLE dispatch_watcher (
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    customer_id UUID NOT NULL REFERENCES dispatch_customer(id) ON DELETE CASCADE,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (issue_id, customer_id)
);
CREATE INDEX dispatch_watcher_customer ON dispatch_watcher (customer_id);

CREATE TABLE dispatch_error_link (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    external_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    url TEXT,
    metadata JSONB NOT NULL,
    event_count BIGINT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    cooldown_until TIMESTAMPTZ,
    UNIQUE (source, external_key)
);
CREATE INDEX dispatch_error_link_issue ON dispatch_error_link (issue_id);

CREATE TABLE dispatch_run (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL,
    status TEXT NOT NULL,
    not_before TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    external_id TEXT,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
    num_turns BIGINT NOT NULL DEFAULT 0,
    outcome TEXT,
    alive_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL
);
CREATE INDEX dispatch_run_issue ON dispatch_run (issue_id, created_at DESC);
CREATE INDEX dispatch_run_due ON dispatch_run (not_before) WHERE status IN ('queued', 'dispatching');
CREATE INDEX dispatch_run_active ON dispatch_run (bucket) WHERE status IN ('queued', 'dispatching', 'running');
CREATE INDEX dispatch_run_alive ON dispatch_run (alive_at) WHERE status = 'running';
CREATE INDEX dispatch_run_created ON dispatch_run (created_at);
CREATE INDEX dispatch_run_external ON dispatch_run (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE dispatch_terminal_chunk (
    run_id UUID NOT NULL REFERENCES dispatch_run(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    content TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX dispatch_terminal_chunk_at ON dispatch_terminal_chunk (at);

CREATE TABLE dispatch_activity (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    run_id UUID REFERENCES dispatch_run(id) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX dispatch_activity_issue ON dispatch_activity (issue_id, created_at DESC);
CREATE INDEX dispatch_activity_created ON dispatch_activity (created_at);

CREATE TABLE dispatch_deferred_spawn (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    due_at TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    doc JSONB NOT NULL,
    UNIQUE (issue_id, kind)
);
CREATE INDEX dispatch_deferred_due ON dispatch_deferred_spawn (due_at);

CREATE TABLE dispatch_fix_attempt (
    id UUID PRIMARY KEY,
    issue_id UUID NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    pr_number BIGINT NOT NULL,
    status TEXT NOT NULL,
    deadline TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    doc JSONB NOT NULL,
    UNIQUE (issue_id, pr_number)
);
CREATE INDEX dispatch_fix_attempt_status ON dispatch_fix_attempt (status, deadline);

CREATE TABLE dispatch_delivery (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

CREATE TABLE dispatch_embedding (
    issue_id UUID PRIMARY KEY REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    workspace_id UUID NOT NULL,
    model TEXT NOT NULL,
    vector REAL[] NOT NULL
);
CREATE INDEX dispatch_embedding_model ON dispatch_embedding (workspace_id, model);
