-- The import map: what an import (Linear CSV, the original Dispatch) brought in, by the source's
-- own id, so that importing the same rows again creates nothing. One row per imported row.
CREATE TABLE dispatch_import_map (
    workspace_id UUID NOT NULL REFERENCES dispatch_workspace(id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    target_id UUID NOT NULL,
    imported_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, source, kind, external_id)
);
