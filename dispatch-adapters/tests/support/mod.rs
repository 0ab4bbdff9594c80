//! Shared set-up for tests against a real PostgreSQL.
#![allow(dead_code)]

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;

/// The server the tests use: `DATABASE_URL`, else the local test database that `scripts/test`
/// creates.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/dispatch_test".to_string())
}

/// Never skips: without a server the test fails and says how to get one.
pub async fn admin_pool() -> PgPool {
    let url = database_url();
    match PgPoolOptions::new().max_connections(2).connect(&url).await {
        Ok(p) => p,
        Err(e) => panic!(
            "PostgreSQL is needed for this test and is not reachable at {url}: {e}\n\
             Run `scripts/test` (it starts or installs PostgreSQL and creates the database), \
             or set DATABASE_URL to a server you can use."
        ),
    }
}

/// A fresh schema on the test database, and connect options whose search_path uses it (public
/// stays on the path for extensions such as pg_trgm).
pub async fn fresh_schema(admin: &PgPool) -> (String, PgConnectOptions) {
    // Extensions are per database: made in public first, so that a store's own
    // `CREATE EXTENSION IF NOT EXISTS` finds them there instead of making them in its fresh
    // schema (which would take them away from every other case when that schema is dropped).
    // Absent ones (pgvector not built here) stay absent; two cases racing here both end with it.
    for ext in ["pg_trgm", "vector"] {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE EXTENSION IF NOT EXISTS {ext} SCHEMA public"
        )))
        .execute(admin)
        .await;
    }
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin)
        .await
        .expect("create schema");
    let opts = PgConnectOptions::from_str(&database_url())
        .expect("DATABASE_URL")
        .options([("search_path", format!("{schema},public"))]);
    (schema, opts)
}

pub async fn drop_schema(admin: &PgPool, schema: &str) {
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(admin)
    .await;
}

pub async fn pool(opts: &PgConnectOptions, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .connect_with(opts.clone())
        .await
        .expect("connect")
}
