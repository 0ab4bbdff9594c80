//! What the SQL stores share: error conversion, decoding helpers, the migration runner and the
//! store logic itself (one implementation, instantiated per database by `impl_sql_store!`).

pub(crate) mod group_commit;
#[macro_use]
mod shared_impl;
#[macro_use]
mod workspace_impl;
#[macro_use]
mod issue_impl;
#[macro_use]
mod error_link_impl;
#[macro_use]
mod run_impl;
#[macro_use]
mod fix_impl;
#[macro_use]
mod customer_impl;
#[macro_use]
mod setting_impl;
#[macro_use]
mod delivery_impl;
#[macro_use]
mod pr_link_impl;
#[macro_use]
mod agent_impl;
#[macro_use]
mod store_impl;
#[macro_use]
mod orchestrator_impl;
#[macro_use]
mod outbox_impl;
#[macro_use]
mod embedding_impl;
#[macro_use]
mod import_impl;

use dispatch_core::{Error, ErrorKind};

/// The SQL stores' own errors; converted into the core's `Error` at the port boundary.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{context}: {source}")]
    Db {
        context: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot decode {table}.{column}: {detail}")]
    Decode {
        table: &'static str,
        column: &'static str,
        detail: String,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Db { source, .. } => match source {
                sqlx::Error::RowNotFound => ErrorKind::NotFound,
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                    ErrorKind::Unavailable
                }
                sqlx::Error::Database(d) if d.is_unique_violation() => ErrorKind::Conflict,
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => ErrorKind::NotFound,
                sqlx::Error::Database(d) => match d.code().as_deref() {
                    // PostgreSQL serialization failure / deadlock; SQLite busy / locked.
                    Some("40001") | Some("40P01") | Some("5") | Some("6") | Some("517") => {
                        ErrorKind::Unavailable
                    }
                    // Disk full: SQLITE_FULL, PostgreSQL disk_full. Nothing was written (the
                    // transaction rolled back), and it passes once space is freed: a 503 whose
                    // message says so, which webhook senders retry; not an opaque 500.
                    Some("13") | Some("53100") => ErrorKind::Unavailable,
                    _ => ErrorKind::Internal,
                },
                _ => ErrorKind::Internal,
            },
            StoreError::Decode { .. } | StoreError::Migration { .. } => ErrorKind::Internal,
        };
        let message = e.to_string();
        Error::new(kind, message).with_source(e)
    }
}

/// `sqlx::Error` → core `Error`, naming what was being done.
pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |source| StoreError::Db { context, source }.into()
}

pub(crate) fn decode_err(
    table: &'static str,
    column: &'static str,
    detail: impl std::fmt::Display,
) -> Error {
    StoreError::Decode {
        table,
        column,
        detail: detail.to_string(),
    }
    .into()
}

/// Reads a column, turning a failure into an `Internal` error that names table and column.
macro_rules! col {
    ($row:expr, $table:literal, $col:literal, $ty:ty) => {{
        use ::sqlx::Row as _;
        $row.try_get::<$ty, _>($col)
            .map_err(|e| $crate::sql::decode_err($table, $col, e))
    }};
}

/// Reads a JSON document column into `T`.
macro_rules! doc_col {
    ($row:expr, $table:literal, $ty:ty) => {{
        use ::sqlx::Row as _;
        $row.try_get::<::sqlx::types::Json<$ty>, _>("doc")
            .map(|j| j.0)
            .map_err(|e| $crate::sql::decode_err($table, "doc", e))
    }};
}
pub(crate) use doc_col;

pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(
    table: &'static str,
    column: &'static str,
    n: i64,
) -> dispatch_core::Result<u64> {
    u64::try_from(n).map_err(|_| decode_err(table, column, format!("negative value {n}")))
}

/// One embedded migration.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Splits a migration script into statements. Statements end with `;` at the end of a line;
/// a `BEGIN … END;` trigger body is kept whole.
pub(crate) fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_trigger = false;
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || (trimmed.is_empty() && cur.trim().is_empty()) {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("CREATE TRIGGER") {
            in_trigger = true;
        }
        if in_trigger {
            // SQLite's body ends with `END;`; PostgreSQL's `CREATE TRIGGER … EXECUTE FUNCTION
            // f();` has no body and ends like any statement.
            let has_body = cur
                .to_ascii_uppercase()
                .split_whitespace()
                .any(|w| w == "BEGIN");
            if upper == "END;" || (!has_body && trimmed.ends_with(';')) {
                in_trigger = false;
                out.push(std::mem::take(&mut cur));
            }
        } else if trimmed.ends_with(';') {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_statements_and_keeps_trigger_bodies() {
        let sql = "-- c\nCREATE TABLE a (x INT);\n\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 1;\n  UPDATE a SET x = 2;\nEND;\nCREATE INDEX i ON a (x);\n";
        let s = split_statements(sql);
        assert_eq!(s.len(), 3);
        assert!(s[1].contains("x = 2"));
        assert!(s[2].starts_with("CREATE INDEX"));
    }

    #[test]
    fn a_postgres_trigger_without_a_body_ends_at_its_semicolon() {
        let sql = "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;\nCREATE TRIGGER t AFTER INSERT ON a\nFOR EACH ROW EXECUTE FUNCTION f();\nCREATE INDEX i ON a (x);\n";
        let s = split_statements(sql);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[1].contains("EXECUTE FUNCTION f()"));
        assert!(s[2].starts_with("CREATE INDEX"));
    }
}
