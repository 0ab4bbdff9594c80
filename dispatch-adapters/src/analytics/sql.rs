//! Read-only SQL tools for the orchestrator (feature `analytics-sql`): `sql_query`,
//! `sql_list_tables`, `sql_describe_table` and `sql_find_table` on a PostgreSQL database
//! (`ANALYTICS_DATABASE_URL`, TLS from the URL's `sslmode`/`sslrootcert` like the store).
//!
//! Safety is PostgreSQL's, not a keyword filter:
//! - every call runs in `BEGIN READ ONLY` with `SET LOCAL statement_timeout`, and is rolled back;
//! - the model's SQL becomes `DECLARE … NO SCROLL CURSOR FOR <sql>`, sent as one prepared
//!   statement (extended protocol): PostgreSQL refuses several statements, accepts only a query
//!   (SELECT, WITH … SELECT, VALUES, TABLE) and refuses data-modifying `WITH`; the read-only
//!   transaction refuses writes anywhere else (`nextval`, `SELECT … FOR UPDATE`, functions);
//! - rows are fetched from the cursor up to the row cap plus one, so a huge result is never read
//!   (`truncated: true` says there was more).
//!
//! Give the tools a role that can only read (`GRANT SELECT`, no superuser): a read-only
//! transaction does not stop a superuser's file and program functions (`pg_read_file`).

use super::{clip, env_u64, env_var, input_object, opt_str, req_str};
use async_trait::async_trait;
use dispatch_core::ports::{ToolContext, ToolProvider, ToolSpec};
use dispatch_core::{Error, ErrorKind, Result};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions, PgRow, PgTypeKind,
    PgValueFormat,
};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};
use std::str::FromStr;
use std::time::Duration;

/// Where the analytics database is and how far a call may go. `Debug` never shows the URL's
/// password.
#[derive(Debug, Clone)]
pub struct SqlToolsConfig {
    /// `ANALYTICS_DATABASE_URL`: `postgres://user:password@host:5432/db?sslmode=require`.
    pub url: SecretString,
    /// `ANALYTICS_STATEMENT_TIMEOUT_MS` (5000): `SET LOCAL statement_timeout` of every call.
    pub statement_timeout: Duration,
    /// `ANALYTICS_ROW_CAP` (200): rows answered at most by `sql_query`.
    pub row_cap: usize,
    /// Connections at most (4).
    pub max_connections: u32,
    /// How long a call waits for a connection (5 s).
    pub acquire_timeout: Duration,
}

impl SqlToolsConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SqlToolsConfig {
            url: SecretString::from(url.into()),
            statement_timeout: Duration::from_millis(5_000),
            row_cap: 200,
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// `None` when `ANALYTICS_DATABASE_URL` is unset. Reads `ANALYTICS_STATEMENT_TIMEOUT_MS` and
    /// `ANALYTICS_ROW_CAP`; an error names the variable (and never repeats the URL).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(url) = env_var(get, "ANALYTICS_DATABASE_URL") else {
            return Ok(None);
        };
        connect_options(&url)?;
        let mut cfg = SqlToolsConfig::new(url);
        cfg.statement_timeout = Duration::from_millis(env_u64(
            get,
            "ANALYTICS_STATEMENT_TIMEOUT_MS",
            5_000,
            100,
            600_000,
        )?);
        cfg.row_cap = env_u64(get, "ANALYTICS_ROW_CAP", 200, 1, 10_000)? as usize;
        Ok(Some(cfg))
    }
}

fn connect_options(url: &str) -> Result<PgConnectOptions> {
    let bad = || {
        Error::invalid(
            "ANALYTICS_DATABASE_URL",
            "ANALYTICS_DATABASE_URL must be a PostgreSQL URL such as \
             postgres://user:password@host:5432/db?sslmode=require",
        )
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(bad());
    }
    PgConnectOptions::from_str(url).map_err(|_| bad())
}

/// The read-only SQL tool set: a [`ToolProvider`] named `sql`.
pub struct SqlTools {
    pool: PgPool,
    /// `host:port/database`, for messages (never the password).
    target: String,
    cfg: SqlToolsConfig,
}

impl std::fmt::Debug for SqlTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTools")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

const CURSOR: &str = "dispatch_analytics";

impl SqlTools {
    /// Builds the pool without connecting (the first call connects, so a database that is down
    /// does not stop the server). Call it inside a Tokio runtime.
    pub fn new(cfg: SqlToolsConfig) -> Result<Self> {
        let opts = connect_options(cfg.url.expose_secret())?;
        let target = format!(
            "{}:{}/{}",
            opts.get_host(),
            opts.get_port(),
            opts.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .acquire_timeout(cfg.acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_lazy_with(opts.application_name("dispatch-analytics"));
        Ok(SqlTools { pool, target, cfg })
    }

    pub fn config(&self) -> &SqlToolsConfig {
        &self.cfg
    }

    /// `host:port/database` of the analytics database.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn connect_error(&self, e: sqlx::Error) -> Error {
        let what = match &e {
            sqlx::Error::PoolTimedOut => format!(
                "no connection within {} s (the server refuses connections or does not answer)",
                self.cfg.acquire_timeout.as_secs_f32()
            ),
            sqlx::Error::Tls(_) => "TLS failed (check sslmode and sslrootcert)".into(),
            sqlx::Error::Io(io) => format!("the server is not reachable ({io})"),
            sqlx::Error::Database(db) => {
                format!("the server refused the connection ({})", db.message())
            }
            sqlx::Error::Configuration(_) => "the URL is not valid".into(),
            other => other.to_string(),
        };
        Error::unavailable(format!(
            "analytics database not reachable at {} (ANALYTICS_DATABASE_URL): {what}",
            self.target
        ))
    }

    /// Runs `work` in a read-only transaction with the statement timeout, then rolls back
    /// whatever happened; the whole call is bounded in time.
    async fn read_only<T: Send>(
        &self,
        work: impl for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, sqlx::Result<T>> + Send,
    ) -> Result<T> {
        let limit = self.cfg.acquire_timeout + self.cfg.statement_timeout + Duration::from_secs(5);
        let call = async {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(|e| self.connect_error(e))?;
            let outcome = async {
                let mut tx = conn
                    .begin_with("BEGIN READ ONLY")
                    .await
                    .map_err(|e| self.db_error(e))?;
                sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                    .bind(self.cfg.statement_timeout.as_millis().to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_error(e))?;
                let result = work(&mut tx).await.map_err(|e| self.db_error(e));
                // Always rolled back: nothing a call did stays.
                tx.rollback().await.map_err(|e| self.db_error(e))?;
                result
            }
            .await;
            // Session-level advisory locks survive a rollback: none may stay on a pooled
            // connection. The call's prepared statements (the cursor's FETCH: its columns
            // differ from call to call) are closed too.
            let clean = sqlx::query("SELECT pg_advisory_unlock_all()")
                .execute(&mut *conn)
                .await
                .is_ok()
                && conn.clear_cached_statements().await.is_ok();
            if !clean {
                let _ = conn.close().await;
            }
            outcome
        };
        match tokio::time::timeout(limit, call).await {
            Ok(r) => r,
            Err(_) => Err(Error::unavailable(format!(
                "the analytics database at {} did not answer within {} s",
                self.target,
                limit.as_secs()
            ))),
        }
    }

    /// A database error as the model should read it.
    fn db_error(&self, e: sqlx::Error) -> Error {
        let db = match &e {
            sqlx::Error::Database(db) => db,
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                return self.connect_error(e);
            }
            _ => return Error::new(ErrorKind::Internal, format!("analytics database: {e}")),
        };
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let mut msg = db.message().to_string();
        if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
            if let Some(d) = pg.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            if let Some(h) = pg.hint() {
                msg.push_str(&format!(" Hint: {h}"));
            }
        }
        match code.as_str() {
            // read_only_sql_transaction
            "25006" => Error::forbidden(format!(
                "refused: the analytics tools only read (every call runs in a READ ONLY \
                 transaction that is rolled back): {msg}"
            )),
            // query_canceled
            "57014" => Error::invalid(
                "sql",
                format!(
                    "the query was stopped by the statement timeout ({} ms): {msg}. Narrow it \
                     (WHERE on indexed columns, LIMIT) or aggregate.",
                    self.cfg.statement_timeout.as_millis()
                ),
            ),
            "42601" if msg.contains("multiple commands") => Error::invalid(
                "sql",
                "sql_query runs exactly one statement: PostgreSQL refused several statements \
                 in one call (cannot insert multiple commands into a prepared statement)",
            ),
            "42601" => Error::invalid(
                "sql",
                format!(
                    "{msg} (sql_query runs one read-only query: SELECT, WITH … SELECT, VALUES \
                     or TABLE)"
                ),
            ),
            // feature_not_supported: DECLARE refuses data-modifying WITH.
            "0A000" => Error::forbidden(format!("refused: {msg}; the analytics tools only read")),
            _ => Error::invalid("sql", msg),
        }
    }

    async fn query(&self, sql: String) -> Result<Value> {
        let cap = self.cfg.row_cap;
        let rows = self
            .read_only(move |conn| {
                Box::pin(async move {
                    let declare = format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}");
                    sqlx::query(sqlx::AssertSqlSafe(declare))
                        .persistent(false)
                        .execute(&mut *conn)
                        .await?;
                    // A named statement: when the rows have types sqlx does not know yet
                    // (enums, extension types) it looks them up on this connection, which would
                    // replace an unnamed statement before it runs. It is closed after the call.
                    let fetch = format!("FETCH FORWARD {} FROM {CURSOR}", cap + 1);
                    sqlx::query(sqlx::AssertSqlSafe(fetch))
                        .persistent(true)
                        .fetch_all(&mut *conn)
                        .await
                })
            })
            .await?;
        let truncated = rows.len() > cap;
        let columns: Vec<Value> = rows
            .first()
            .map(|r| {
                r.columns()
                    .iter()
                    .map(|c| json!({"name": c.name(), "type": c.type_info().name()}))
                    .collect()
            })
            .unwrap_or_default();
        let out: Vec<Value> = rows.iter().take(cap).map(render_row).collect();
        Ok(json!({
            "columns": columns,
            "rows": out,
            "rowCount": out.len(),
            "truncated": truncated,
            "rowCap": cap,
        }))
    }

    async fn list_tables(&self, schema: Option<String>) -> Result<Value> {
        let rows = self
            .read_only(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "SELECT table_schema::text, table_name::text, table_type::text \
                         FROM information_schema.tables \
                         WHERE CASE WHEN $1::text IS NULL \
                           THEN table_schema NOT IN ('pg_catalog', 'information_schema') \
                                AND table_schema NOT LIKE 'pg\\_toast%' \
                                AND table_schema NOT LIKE 'pg\\_temp%' \
                           ELSE table_schema = $1 END \
                         ORDER BY 1, 2 LIMIT 1001",
                    )
                    .bind(schema)
                    .fetch_all(&mut *conn)
                    .await
                })
            })
            .await?;
        let truncated = rows.len() > 1_000;
        let mut schemas: Map<String, Value> = Map::new();
        for r in rows.iter().take(1_000) {
            let schema: String = r.get(0);
            let name: String = r.get(1);
            let kind: String = r.get(2);
            let kind = match kind.as_str() {
                "BASE TABLE" => "table",
                "VIEW" => "view",
                "FOREIGN" => "foreign table",
                _ => "other",
            };
            if let Value::Array(list) = schemas.entry(schema).or_insert_with(|| json!([])) {
                list.push(json!({"name": name, "type": kind}));
            }
        }
        Ok(json!({
            "tableCount": rows.len().min(1_000),
            "truncated": truncated,
            "schemas": schemas,
        }))
    }

    async fn describe_table(&self, table: String) -> Result<Value> {
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (unquote(s), unquote(t)),
            None => ("public".to_string(), unquote(&table)),
        };
        let (s2, n2) = (schema.clone(), name.clone());
        let (columns, facts) = self
            .read_only(move |conn| {
                Box::pin(async move {
                    let columns = sqlx::query(
                        "SELECT column_name::text, \
                           CASE WHEN data_type IN ('USER-DEFINED', 'ARRAY') THEN udt_name::text \
                                ELSE data_type::text END, \
                           is_nullable = 'YES', column_default::text \
                         FROM information_schema.columns \
                         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                    )
                    .bind(&s2)
                    .bind(&n2)
                    .fetch_all(&mut *conn)
                    .await?;
                    let facts = sqlx::query(
                        "SELECT c.reltuples::bigint, \
                           (SELECT array_agg(a.attname::text ORDER BY k.n) \
                              FROM pg_index i \
                              CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
                              JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                             WHERE i.indrelid = c.oid AND i.indisprimary), \
                           obj_description(c.oid, 'pg_class') \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relname = $2",
                    )
                    .bind(&s2)
                    .bind(&n2)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok((columns, facts))
                })
            })
            .await?;
        if columns.is_empty() {
            return Err(Error::not_found(format!(
                "no table or view {schema}.{name} (or no access to it); use sql_find_table or \
                 sql_list_tables to find the right name"
            )));
        }
        let cols: Vec<Value> = columns
            .iter()
            .map(|r| {
                json!({
                    "name": r.get::<String, _>(0),
                    "type": r.get::<String, _>(1),
                    "nullable": r.get::<bool, _>(2),
                    "default": r.get::<Option<String>, _>(3),
                })
            })
            .collect();
        let (estimated_rows, primary_key, comment) = match &facts {
            Some(r) => (
                r.get::<Option<i64>, _>(0).filter(|n| *n >= 0),
                r.get::<Option<Vec<String>>, _>(1),
                r.get::<Option<String>, _>(2),
            ),
            None => (None, None, None),
        };
        Ok(json!({
            "table": format!("{schema}.{name}"),
            "columns": cols,
            "primaryKey": primary_key.unwrap_or_default(),
            "estimatedRows": estimated_rows,
            "comment": comment,
        }))
    }

    async fn find_table(&self, pattern: String) -> Result<Value> {
        let like = format!(
            "%{}%",
            pattern
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let (tables, columns) = self
            .read_only(move |conn| {
                Box::pin(async move {
                    let tables = sqlx::query(
                        "SELECT table_schema::text, table_name::text, table_type::text \
                         FROM information_schema.tables \
                         WHERE table_name ILIKE $1 \
                           AND table_schema NOT IN ('pg_catalog', 'information_schema') \
                         ORDER BY 1, 2 LIMIT 100",
                    )
                    .bind(&like)
                    .fetch_all(&mut *conn)
                    .await?;
                    let columns = sqlx::query(
                        "SELECT table_schema::text, table_name::text, column_name::text \
                         FROM information_schema.columns \
                         WHERE column_name ILIKE $1 \
                           AND table_schema NOT IN ('pg_catalog', 'information_schema') \
                         ORDER BY 1, 2, 3 LIMIT 100",
                    )
                    .bind(&like)
                    .fetch_all(&mut *conn)
                    .await?;
                    Ok((tables, columns))
                })
            })
            .await?;
        let tables: Vec<Value> = tables
            .iter()
            .map(|r| {
                json!({
                    "table": format!("{}.{}", r.get::<String, _>(0), r.get::<String, _>(1)),
                    "type": if r.get::<String, _>(2) == "VIEW" { "view" } else { "table" },
                })
            })
            .collect();
        let columns: Vec<Value> = columns
            .iter()
            .map(|r| {
                json!({
                    "table": format!("{}.{}", r.get::<String, _>(0), r.get::<String, _>(1)),
                    "column": r.get::<String, _>(2),
                })
            })
            .collect();
        Ok(json!({ "pattern": pattern, "tables": tables, "columns": columns }))
    }
}

/// `"Name"` → `Name`; unquoted names fold to lower case as PostgreSQL does.
fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].replace("\"\"", "\"")
    } else {
        s.to_lowercase()
    }
}

fn render_row(row: &PgRow) -> Value {
    Value::Array((0..row.columns().len()).map(|i| render(row, i)).collect())
}

/// A column's value as JSON: numbers, booleans, text, timestamps (RFC 3339), JSON, uuids;
/// `numeric` as a string (exact); other types as a placeholder that says how to read them.
fn render(row: &PgRow, i: usize) -> Value {
    let Ok(raw) = row.try_get_raw(i) else {
        return Value::Null;
    };
    if raw.is_null() {
        return Value::Null;
    }
    let ty = raw.type_info().into_owned();
    let name = ty.name().to_string();
    let base = match ty.kind() {
        PgTypeKind::Domain(b) => b.name().to_string(),
        PgTypeKind::Enum(_) => "TEXT".to_string(),
        _ => name.clone(),
    };
    macro_rules! get {
        ($t:ty) => {
            row.try_get_unchecked::<$t, _>(i).ok()
        };
    }
    let text = |s: String| json!(clip(&s, 2_000));
    let v: Option<Value> = match base.as_str() {
        "BOOL" => get!(bool).map(Value::from),
        "INT2" => get!(i16).map(Value::from),
        "INT4" => get!(i32).map(Value::from),
        "INT8" => get!(i64).map(Value::from),
        "OID" => get!(sqlx::postgres::types::Oid).map(|o| json!(o.0)),
        "FLOAT4" => get!(f32).map(|f| float(f64::from(f))),
        "FLOAT8" => get!(f64).map(float),
        "NUMERIC" => raw
            .as_bytes()
            .ok()
            .filter(|_| raw.format() == PgValueFormat::Binary)
            .and_then(numeric_text)
            .map(Value::from),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" | "XML" => {
            get!(String).map(text)
        }
        "UUID" => get!(uuid::Uuid).map(|u| json!(u.to_string())),
        "TIMESTAMPTZ" => get!(chrono::DateTime<chrono::Utc>)
            .map(|t| json!(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))),
        "TIMESTAMP" => {
            get!(chrono::NaiveDateTime).map(|t| json!(t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()))
        }
        "DATE" => get!(chrono::NaiveDate).map(|d| json!(d.to_string())),
        "TIME" => get!(chrono::NaiveTime).map(|t| json!(t.to_string())),
        "INTERVAL" => get!(sqlx::postgres::types::PgInterval).map(|iv| json!(interval(&iv))),
        "JSON" | "JSONB" => get!(Value).map(|j| {
            let s = j.to_string();
            if s.len() > 8_000 {
                json!(clip(&s, 4_000))
            } else {
                j
            }
        }),
        "BYTEA" => get!(Vec<u8>).map(|b| {
            let hex: String = b.iter().take(256).map(|x| format!("{x:02x}")).collect();
            json!(format!("\\x{hex}{}", if b.len() > 256 { "…" } else { "" }))
        }),
        "VOID" => Some(Value::Null),
        "TEXT[]" | "VARCHAR[]" | "NAME[]" | "BPCHAR[]" => get!(Vec<Option<String>>).map(|v| {
            json!(
                v.into_iter()
                    .take(500)
                    .map(|s| s.map(|s| clip(&s, 500)))
                    .collect::<Vec<_>>()
            )
        }),
        "INT2[]" => get!(Vec<Option<i16>>).map(|v| json!(v)),
        "INT4[]" => get!(Vec<Option<i32>>).map(|v| json!(v)),
        "INT8[]" => get!(Vec<Option<i64>>).map(|v| json!(v)),
        "FLOAT8[]" => get!(Vec<Option<f64>>).map(|v| json!(v)),
        "BOOL[]" => get!(Vec<Option<bool>>).map(|v| json!(v)),
        "UUID[]" => get!(Vec<Option<uuid::Uuid>>).map(|v| {
            json!(
                v.into_iter()
                    .map(|u| u.map(|u| u.to_string()))
                    .collect::<Vec<_>>()
            )
        }),
        _ => None,
    };
    v.unwrap_or_else(|| {
        json!(format!(
            "<{name} value: not rendered; select it as text, e.g. {}::text>",
            row.columns()[i].name()
        ))
    })
}

fn float(f: f64) -> Value {
    if f.is_finite() {
        json!(f)
    } else {
        json!(f.to_string())
    }
}

fn interval(iv: &sqlx::postgres::types::PgInterval) -> String {
    let mut parts = Vec::new();
    if iv.months != 0 {
        parts.push(format!("{} mons", iv.months));
    }
    if iv.days != 0 {
        parts.push(format!("{} days", iv.days));
    }
    let us = iv.microseconds;
    if us != 0 || parts.is_empty() {
        let sign = if us < 0 { "-" } else { "" };
        let us = us.unsigned_abs();
        let (h, m, s, frac) = (
            us / 3_600_000_000,
            us / 60_000_000 % 60,
            us / 1_000_000 % 60,
            us % 1_000_000,
        );
        let mut t = format!("{sign}{h:02}:{m:02}:{s:02}");
        if frac != 0 {
            t.push_str(format!(".{frac:06}").trim_end_matches('0'));
        }
        parts.push(t);
    }
    parts.join(" ")
}

/// PostgreSQL's binary `numeric` as exact decimal text: `ndigits`, `weight`, `sign`, `dscale`
/// (each 16 bits), then `ndigits` base-10000 digits.
pub fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let ndigits = word(0)? as usize;
    let weight = word(2)? as i16 as i64;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0x0000 | 0x4000 => {}
        _ => return None,
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|k| word(8 + 2 * k))
        .collect::<Option<_>>()?;
    let digit = |k: i64| -> u16 {
        if k >= 0 && (k as usize) < digits.len() {
            digits[k as usize]
        } else {
            0
        }
    };
    let mut out = String::new();
    if sign == 0x4000 && !digits.iter().all(|d| *d == 0) {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        for k in 0..=weight {
            if k == 0 {
                out.push_str(&digit(k).to_string());
            } else {
                out.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut k = weight + 1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale);
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

fn schema(properties: Value, required: &[&str]) -> Value {
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

#[async_trait]
impl ToolProvider for SqlTools {
    fn name(&self) -> &str {
        "sql"
    }

    fn tools(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "sql_query".into(),
                description: format!(
                    "Runs one read-only SQL query (PostgreSQL: SELECT, WITH … SELECT, VALUES or \
                     TABLE) on the analytics database and answers columns and rows (at most {} \
                     rows; truncated says there were more). Writes, several statements and \
                     statements that are not queries are refused; a query running longer than \
                     {} ms is stopped. Find tables first with sql_find_table or sql_list_tables \
                     and check columns with sql_describe_table. Aggregate (COUNT, GROUP BY) \
                     rather than reading many rows.",
                    self.cfg.row_cap,
                    self.cfg.statement_timeout.as_millis()
                ),
                input_schema: schema(
                    json!({"sql": {"type": "string", "description": "One PostgreSQL query, e.g. SELECT status, count(*) FROM app.orders WHERE created_at > now() - interval '1 day' GROUP BY 1"}}),
                    &["sql"],
                ),
            },
            ToolSpec {
                name: "sql_list_tables".into(),
                description: "Lists the tables and views of the analytics database, grouped by \
                    schema (system schemas left out), or of one schema."
                    .into(),
                input_schema: schema(
                    json!({"schema": {"type": "string", "description": "Only this schema, e.g. public."}}),
                    &[],
                ),
            },
            ToolSpec {
                name: "sql_describe_table".into(),
                description: "Describes one table or view: its columns (name, type, nullable, \
                    default), primary key, estimated row count and comment."
                    .into(),
                input_schema: schema(
                    json!({"table": {"type": "string", "description": "schema.table, e.g. public.orders (a bare name means public)."}}),
                    &["table"],
                ),
            },
            ToolSpec {
                name: "sql_find_table".into(),
                description: "Finds tables and columns whose name contains a text (ignoring \
                    case), e.g. \"invoice\"."
                    .into(),
                input_schema: schema(
                    json!({"pattern": {"type": "string", "description": "Part of a table or column name."}}),
                    &["pattern"],
                ),
            },
        ]
    }

    async fn call(&self, _ctx: &ToolContext, name: &str, input: Value) -> Result<Value> {
        let args = input_object(&input)?;
        match name {
            "sql_query" => {
                let sql = req_str(&args, "sql")?;
                if sql.len() > 100_000 {
                    return Err(Error::invalid(
                        "sql",
                        "sql is longer than 100000 characters",
                    ));
                }
                self.query(sql).await
            }
            "sql_list_tables" => self.list_tables(opt_str(&args, "schema")?).await,
            "sql_describe_table" => self.describe_table(req_str(&args, "table")?).await,
            "sql_find_table" => {
                let p = req_str(&args, "pattern")?;
                if p.chars().count() > 200 {
                    return Err(Error::invalid(
                        "pattern",
                        "pattern is longer than 200 characters",
                    ));
                }
                self.find_table(p).await
            }
            other => Err(Error::not_found(format!("the sql tools have no {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_render_exactly() {
        assert_eq!(
            numeric_text(&numeric(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        assert_eq!(
            numeric_text(&numeric(1, -2, 0x4000, 5, &[1000])).unwrap(),
            "-0.00001"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0, 0, &[])).unwrap(), "0");
        assert_eq!(
            numeric_text(&numeric(1, 2, 0, 0, &[7])).unwrap(),
            "700000000"
        );
        assert_eq!(numeric_text(&numeric(0, 0, 0xC000, 0, &[])).unwrap(), "NaN");
        assert!(numeric_text(&[0, 1]).is_none());
    }

    #[test]
    fn intervals_read_like_postgres() {
        use sqlx::postgres::types::PgInterval;
        let iv = |months, days, microseconds| PgInterval {
            months,
            days,
            microseconds,
        };
        assert_eq!(interval(&iv(0, 0, 0)), "00:00:00");
        assert_eq!(
            interval(&iv(1, 2, 3_723_500_000)),
            "1 mons 2 days 01:02:03.5"
        );
        assert_eq!(interval(&iv(0, 0, -60_000_000)), "-00:01:00");
    }
}
