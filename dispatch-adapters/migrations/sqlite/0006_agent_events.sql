-- Events queued for agents (`POST /api/mcp/webhook`), read once with the MCP tool `poll_events`.
-- Kept in the store, so that any replica answers the poll.

CREATE TABLE dispatch_agent_event (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id BLOB NOT NULL REFERENCES dispatch_agent(id) ON DELETE CASCADE,
    doc TEXT NOT NULL,
    received_at INTEGER NOT NULL
);

CREATE INDEX dispatch_agent_event_agent ON dispatch_agent_event (agent_id, seq);
