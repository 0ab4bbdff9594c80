-- Dispatch schema for SQLite (timestamps are INTEGER microseconds since the Unix epoch, UUIDs
-- are 16-byte BLOBs, JSON is TEXT). Aggregates are stored as a JSON document (`doc`) next to the
-- columns that are filtered, ordered, locked or aggregated on; every write updates both.
CREATE TABLE dispatch_workspace (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    issue_prefix TEXT NOT NULL UNIQUE,
    next_issue_number INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

CREATE TABLE dispatch_column (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    color TEXT NOT NULL,
    position INTEGER NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('open', 'closed'))
);
CREATE INDEX dispatch_column_ws ON dispatch_column (workspace_id, position);

CREATE TABLE dispatch_label (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    color TEXT NOT NULL,
    UNIQUE (workspace_id, name_key)
);

CREATE TABLE dispatch_customer (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    slug TEXT NOT NULL,
    portal_token TEXT NOT NULL UNIQUE,
    slack_channel_id TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (workspace_id, slug)
);

CREATE TABLE dispatch_issue (
    id BLOB PRIMARY KEY,
    workspace_id BLOB NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    identifier TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT,
    comments_text TEXT NOT NULL DEFAULT '',
    column_id BLOB NOT NULL,
    customer_id BLOB REFERENCES dispatch_customer(id) ON DELETE SET NULL,
    spawn_active INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (workspace_id, number)
);
CREATE INDEX dispatch_issue_column ON dispatch_issue (column_id);
CREATE INDEX dispatch_issue_customer ON dispatch_issue (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE dispatch_comment (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    author TEXT,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX dispatch_comment_issue ON dispatch_comment (issue_id, created_at);

CREATE TABLE dispatch_history (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX dispatch_history_issue ON dispatch_history (issue_id, created_at DESC);

CREATE TABLE dispatch_watcher (
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    customer_id BLOB NOT NULL REFERENCES dispatch_customer(id) ON DELETE CASCADE,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (issue_id, customer_id)
);
CREATE INDEX dispatch_watcher_customer ON dispatch_watcher (customer_id);

CREATE TABLE dispatch_error_link (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    external_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    url TEXT,
    metadata TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    cooldown_until INTEGER,
    UNIQUE (source, external_key)
);
CREATE INDEX dispatch_error_link_issue ON dispatch_error_link (issue_id);

CREATE TABLE dispatch_run (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    bucket TEXT NOT NULL,
    status TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    lease_until INTEGER,
    external_id TEXT,
    cost_usd REAL NOT NULL DEFAULT 0,
    num_turns INTEGER NOT NULL DEFAULT 0,
    outcome TEXT,
    alive_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX dispatch_run_issue ON dispatch_run (issue_id, created_at DESC);
CREATE INDEX dispatch_run_due ON dispatch_run (not_before) WHERE status IN ('queued', 'dispatching');
CREATE INDEX dispatch_run_active ON dispatch_run (bucket) WHERE status IN ('queued', 'dispatching', 'running');
CREATE INDEX dispatch_run_alive ON dispatch_run (alive_at) WHERE status = 'running';
CREATE INDEX dispatch_run_created ON dispatch_run (created_at);
CREATE INDEX dispatch_run_external ON dispatch_run (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE dispatch_terminal_chunk (
    run_id BLOB NOT NULL REFERENCES dispatch_run(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    content TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX dispatch_terminal_chunk_at ON dispatch_terminal_chunk (at);

CREATE TABLE dispatch_activity (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    run_id BLOB REFERENCES dispatch_run(id) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX dispatch_activity_issue ON dispatch_activity (issue_id, created_at DESC);
CREATE INDEX dispatch_activity_created ON dispatch_activity (created_at);

CREATE TABLE dispatch_deferred_spawn (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    lease_until INTEGER,
    doc TEXT NOT NULL,
    UNIQUE (issue_id, kind)
);
CREATE INDEX dispatch_deferred_due ON dispatch_deferred_spawn (due_at);

CREATE TABLE dispatch_fix_attempt (
    id BLOB PRIMARY KEY,
    issue_id BLOB NOT NULL REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    pr_number INTEGER NOT NULL,
    status TEXT NOT NULL,
    deadline INTEGER,
    created_at INTEGER NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (issue_id, pr_number)
);
CREATE INDEX dispatch_fix_attempt_status ON dispatch_fix_attempt (status, deadline);

CREATE TABLE dispatch_delivery (
    source TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
);

CREATE TABLE dispatch_embedding (
    issue_id BLOB PRIMARY KEY REFERENCES dispatch_issue(id) ON DELETE CASCADE,
    workspace_id BLOB NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX dispatch_embedding_model ON dispatch_embedding (workspace_id, model);

-- Full-text search over title, description and comments, kept in step by triggers in the same
-- transaction as the write.
CREATE VIRTUAL TABLE dispatch_issue_fts USING fts5(title, description, comments, tokenize = 'unicode61');

CREATE TRIGGER dispatch_issue_fts_insert AFTER INSERT ON dispatch_issue BEGIN
    INSERT INTO dispatch_issue_fts (rowid, title, description, comments)
    VALUES (new.rowid, new.title, coalesce(new.description, ''), '');
END;

CREATE TRIGGER dispatch_issue_fts_update AFTER UPDATE OF title, description ON dispatch_issue BEGIN
    UPDATE dispatch_issue_fts SET title = new.title, description = coalesce(new.description, '')
    WHERE rowid = new.rowid;
END;

CREATE TRIGGER dispatch_issue_fts_delete AFTER DELETE ON dispatch_issue BEGIN
    DELETE FROM dispatch_issue_fts WHERE rowid = old.rowid;
END;

CREATE TRIGGER dispatch_comment_fts_insert AFTER INSERT ON dispatch_comment BEGIN
    UPDATE dispatch_issue_fts SET comments = comments || ' ' || new.body
    WHERE rowid = (SELECT rowid FROM dispatch_issue WHERE id = new.issue_id);
END;
