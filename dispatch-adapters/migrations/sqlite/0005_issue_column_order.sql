-- A board column's newest issues, page by page, without reading the other columns' rows.
CREATE INDEX dispatch_issue_column_number ON dispatch_issue (workspace_id, column_id, number DESC);
