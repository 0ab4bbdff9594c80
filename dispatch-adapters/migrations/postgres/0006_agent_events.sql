-- Events queued for agents (`POST /api/mcp/webhook`), read once with the MCP tool `poll_events`.
-- Kept in the store, so that any replica answers the poll.

CREATE TABLE dispatch_agent_event (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id UUID NOT NULL REFERENCES dispatch_agent(id) ON DELETE CASCADE,
    doc JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX dispatch_agent_event_agent ON dispatch_agent_event (agent_id, seq);
