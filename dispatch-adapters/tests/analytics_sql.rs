//! The read-only SQL tools (`analytics-sql` feature) against a real PostgreSQL: the test server
//! of the other PostgreSQL tests (`DATABASE_URL`, else `scripts/test`'s local database; never
//! skipped), a fresh schema per test, dropped at the end.
#![cfg(feature = "analytics-sql")]

mod support;

use dispatch_adapters::analytics::sql::{SqlTools, SqlToolsConfig};
use dispatch_core::error::ErrorKind;
use dispatch_core::ids::{SessionId, WorkspaceId};
use dispatch_core::ports::{ToolContext, ToolProvider};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::time::{Duration, Instant};

fn ctx() -> ToolContext {
    ToolContext {
        workspace_id: WorkspaceId::new(),
        session_id: SessionId::new(),
        user: "ada".into(),
        now: chrono::Utc::now(),
    }
}

/// A fresh schema with an `orders` table (3 rows, many types), a 1000-row `big` table, a
/// sequence and a function that writes.
struct Db {
    admin: PgPool,
    schema: String,
}

impl Db {
    async fn new() -> Db {
        let admin = support::admin_pool().await;
        let (schema, _) = support::fresh_schema(&admin).await;
        let s = &schema;
        let ddl = format!(
            r#"
            CREATE TYPE {s}.mood AS ENUM ('happy', 'sad');
            CREATE TABLE {s}.orders (
                id int PRIMARY KEY, note text, amount numeric(12,3), paid bool,
                created_at timestamptz, day date, meta jsonb, ref uuid, ratio float8,
                tags text[], big bigint, small smallint, blob bytea, span interval,
                mood {s}.mood, addr inet
            );
            COMMENT ON TABLE {s}.orders IS 'Customer orders';
            INSERT INTO {s}.orders VALUES
              (1, 'hello "world"', 12345.678, true, '2026-12-04 10:00:00.5+00', '2026-12-04',
               '{{"a": [1, 2], "b": null}}', 'b2c1d7e4-0000-4000-8000-000000000001', 0.25,
               ARRAY['x', NULL], 9007199254740993, -3, '\xdead', '1 day 02:00:00', 'happy',
               '10.0.0.1'),
              (2, NULL, -0.001, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
               NULL, NULL, NULL),
              (3, 'third', 0, NULL, NULL, NULL, '[]', NULL, 'NaN', '{{}}', 0, 0, '', '0',
               'sad', NULL);
            CREATE TABLE {s}.big AS SELECT generate_series(1, 1000) AS n;
            CREATE TABLE {s}.invoice_lines (invoice_id int, line_no int);
            CREATE SEQUENCE {s}.seq;
            CREATE FUNCTION {s}.sneaky() RETURNS int LANGUAGE sql
              AS 'INSERT INTO {s}.orders (id) VALUES (99) RETURNING 1';
            "#
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&admin)
            .await
            .expect("set-up");
        Db { admin, schema }
    }

    fn tools(&self, env: &[(&str, &str)]) -> SqlTools {
        let url = support::database_url();
        let get = |k: &str| {
            if k == "ANALYTICS_DATABASE_URL" {
                return Some(url.clone());
            }
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        SqlTools::new(SqlToolsConfig::from_lookup(&get).unwrap().unwrap()).unwrap()
    }

    async fn orders(&self) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.orders",
            self.schema
        )))
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }

    async fn cleanup(self) {
        support::drop_schema(&self.admin, &self.schema).await;
    }
}

async fn query(t: &SqlTools, sql: &str) -> dispatch_core::Result<Value> {
    t.call(&ctx(), "sql_query", json!({ "sql": sql })).await
}

#[tokio::test]
async fn a_select_answers_columns_and_rows_with_json_values() {
    let db = Db::new().await;
    let t = db.tools(&[]);
    let out = query(
        &t,
        &format!("SELECT * FROM {}.orders ORDER BY id", db.schema),
    )
    .await
    .expect("select");
    let cols: Vec<(&str, &str)> = out["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(cols[0], ("id", "INT4"));
    assert_eq!(cols[2], ("amount", "NUMERIC"));
    assert_eq!(cols[4], ("created_at", "TIMESTAMPTZ"));
    assert_eq!(cols.len(), 16);
    assert_eq!(out["rowCount"], 3);
    assert_eq!(out["truncated"], false);
    assert_eq!(
        out["rows"][0],
        json!([
            1,
            "hello \"world\"",
            "12345.678",
            true,
            "2026-12-04T10:00:00.500Z",
            "2026-12-04",
            {"a": [1, 2], "b": null},
            "b2c1d7e4-0000-4000-8000-000000000001",
            0.25,
            ["x", null],
            9007199254740993i64,
            -3,
            "\\xdead",
            "1 days 02:00:00",
            "happy",
            "<INET value: not rendered; select it as text, e.g. addr::text>"
        ])
    );
    assert_eq!(out["rows"][1][1], Value::Null);
    assert_eq!(out["rows"][1][2], "-0.001");
    assert_eq!(out["rows"][2][2], "0.000", "numeric keeps its scale");
    assert_eq!(out["rows"][2][6], json!([]));
    assert_eq!(out["rows"][2][8], "NaN");
    assert_eq!(out["rows"][2][9], json!([]));
    assert_eq!(out["rows"][2][12], "\\x");
    assert_eq!(out["rows"][2][13], "00:00:00");

    // The fallback the placeholder suggests works.
    let out = query(
        &t,
        &format!(
            "SELECT addr::text, 1.5::numeric * 2 AS x, 'lit' AS l FROM {}.orders WHERE id = 1",
            db.schema
        ),
    )
    .await
    .unwrap();
    assert_eq!(out["rows"][0], json!(["10.0.0.1/32", "3.0", "lit"]));
    db.cleanup().await;
}

#[tokio::test]
async fn writes_of_every_kind_are_refused_by_postgresql() {
    let db = Db::new().await;
    let t = db.tools(&[]);
    let s = &db.schema;
    let cases = [
        format!("INSERT INTO {s}.orders (id) VALUES (10)"),
        format!("UPDATE {s}.orders SET note = 'x'"),
        format!("DELETE FROM {s}.orders"),
        format!("DROP TABLE {s}.orders"),
        format!("CREATE TABLE {s}.made (a int)"),
        format!("TRUNCATE {s}.orders"),
        format!("WITH d AS (DELETE FROM {s}.orders RETURNING *) SELECT * FROM d"),
        format!("SELECT 1; DELETE FROM {s}.orders"),
        format!("SELECT 1 FROM {s}.orders; DROP TABLE {s}.orders;"),
        format!("SELECT nextval('{s}.seq')"),
        format!("SELECT {s}.sneaky()"),
        format!("SELECT * FROM {s}.orders FOR UPDATE"),
        format!("COPY {s}.orders TO STDOUT"),
        "COMMIT".to_string(),
        "SET statement_timeout = 0".to_string(),
    ];
    for sql in &cases {
        let err = query(&t, sql).await.expect_err(sql);
        assert!(
            matches!(
                err.kind,
                ErrorKind::Forbidden | ErrorKind::InvalidInput { .. }
            ),
            "{sql}: {err:?}"
        );
    }
    // What PostgreSQL said, per kind.
    let err = query(&t, &format!("SELECT nextval('{s}.seq')"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    assert!(err.message.contains("read-only transaction"), "{err}");
    let err = query(&t, &format!("SELECT {s}.sneaky()"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden, "{err}");
    let err = query(&t, &format!("SELECT 1; DELETE FROM {s}.orders"))
        .await
        .unwrap_err();
    assert!(err.message.contains("exactly one statement"), "{err}");
    let err = query(
        &t,
        &format!("WITH d AS (DELETE FROM {s}.orders RETURNING *) SELECT * FROM d"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden, "{err}");

    assert_eq!(db.orders().await, 3, "every row is still there");
    let (called,): (bool,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT is_called FROM {s}.seq"
    )))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert!(!called, "the sequence never moved");
    let made: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT to_regclass('{s}.made')::text"
    )))
    .fetch_one(&db.admin)
    .await
    .unwrap();
    assert_eq!(made, None, "no table was created");
    // And the connection still works.
    assert_eq!(
        query(&t, "SELECT 41 + 1").await.unwrap()["rows"],
        json!([[42]])
    );
    db.cleanup().await;
}

#[tokio::test]
async fn nothing_a_call_does_outlives_it() {
    let db = Db::new().await;
    // One connection, so the second call surely reuses the first one's session.
    let url = support::database_url();
    let mut cfg = SqlToolsConfig::new(url);
    cfg.max_connections = 1;
    let t = SqlTools::new(cfg).unwrap();
    query(&t, "SELECT set_config('dispatch.probe', 'left', false)")
        .await
        .unwrap();
    let out = query(&t, "SELECT current_setting('dispatch.probe', true)")
        .await
        .unwrap();
    assert!(
        matches!(&out["rows"][0][0], Value::Null) || out["rows"][0][0] == "",
        "the setting was rolled back: {out}"
    );
    query(&t, "SELECT pg_advisory_lock(4242)").await.unwrap();
    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(4242)")
        .fetch_one(&db.admin)
        .await
        .unwrap();
    assert!(free, "the call's advisory lock was released");
    let _ = sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&db.admin)
        .await;
    // The one connection answers queries of other shapes correctly after each other.
    assert_eq!(
        query(&t, "SELECT 7 AS n").await.unwrap()["rows"],
        json!([[7]])
    );
    let out = query(&t, "SELECT 'a'::text AS s, 2.5::float8 AS f")
        .await
        .unwrap();
    assert_eq!(out["rows"], json!([["a", 2.5]]));
    assert_eq!(out["columns"][0], json!({"name": "s", "type": "TEXT"}));
    db.cleanup().await;
}

#[tokio::test]
async fn a_long_query_is_stopped_by_the_statement_timeout() {
    let db = Db::new().await;
    let t = db.tools(&[("ANALYTICS_STATEMENT_TIMEOUT_MS", "1000")]);
    let started = Instant::now();
    let err = query(&t, "SELECT pg_sleep(30)").await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "stopped by the timeout, not before"
    );
    assert!(err.message.contains("statement timeout"), "{err}");
    assert!(err.message.contains("1000 ms"), "{err}");
    // The pooled connection is fine afterwards, and the timeout is per call only.
    let out = query(&t, "SELECT current_setting('statement_timeout')")
        .await
        .unwrap();
    assert_eq!(out["rows"][0][0], "1s");
    db.cleanup().await;
}

#[tokio::test]
async fn rows_stop_at_the_cap() {
    let db = Db::new().await;
    let t = db.tools(&[("ANALYTICS_ROW_CAP", "10")]);
    let s = &db.schema;
    let out = query(&t, &format!("SELECT n FROM {s}.big ORDER BY n"))
        .await
        .unwrap();
    assert_eq!(out["rowCount"], 10);
    assert_eq!(out["truncated"], true);
    assert_eq!(out["rows"][9], json!([10]));
    let out = query(&t, &format!("SELECT n FROM {s}.big ORDER BY n LIMIT 10"))
        .await
        .unwrap();
    assert_eq!(out["rowCount"], 10);
    assert_eq!(out["truncated"], false, "exactly the cap is not truncated");
    let out = query(&t, &format!("SELECT n FROM {s}.big WHERE n < 0"))
        .await
        .unwrap();
    assert_eq!(out["rowCount"], 0);
    assert_eq!(out["rows"], json!([]));
    db.cleanup().await;
}

#[tokio::test]
async fn tables_are_listed_described_and_found() {
    let db = Db::new().await;
    let t = db.tools(&[]);
    let s = &db.schema;
    let out = t
        .call(&ctx(), "sql_list_tables", json!({ "schema": s }))
        .await
        .unwrap();
    assert_eq!(
        out["schemas"][s.as_str()],
        json!([
            {"name": "big", "type": "table"},
            {"name": "invoice_lines", "type": "table"},
            {"name": "orders", "type": "table"},
        ])
    );
    let all = t.call(&ctx(), "sql_list_tables", json!({})).await.unwrap();
    assert!(all["schemas"].get(s.as_str()).is_some());
    assert!(all["schemas"].get("pg_catalog").is_none());

    let out = t
        .call(
            &ctx(),
            "sql_describe_table",
            json!({ "table": format!("{s}.orders") }),
        )
        .await
        .unwrap();
    assert_eq!(out["primaryKey"], json!(["id"]));
    assert_eq!(out["comment"], "Customer orders");
    let cols = out["columns"].as_array().unwrap();
    assert_eq!(cols.len(), 16);
    assert_eq!(
        cols[0],
        json!({"name": "id", "type": "integer", "nullable": false, "default": null})
    );
    assert_eq!(cols[2]["type"], "numeric");
    assert_eq!(cols[9]["type"], "_text");
    assert_eq!(cols[14]["type"], "mood");

    let err = t
        .call(
            &ctx(),
            "sql_describe_table",
            json!({ "table": format!("{s}.nope") }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(err.message.contains("sql_find_table"), "{err}");

    let out = t
        .call(&ctx(), "sql_find_table", json!({ "pattern": "INVOICE" }))
        .await
        .unwrap();
    assert!(
        out["tables"]
            .as_array()
            .unwrap()
            .contains(&json!({"table": format!("{s}.invoice_lines"), "type": "table"})),
        "{out}"
    );
    assert!(
        out["columns"]
            .as_array()
            .unwrap()
            .contains(&json!({"table": format!("{s}.invoice_lines"), "column": "invoice_id"})),
        "{out}"
    );
    // LIKE wildcards in the pattern are literal.
    let out = t
        .call(
            &ctx(),
            "sql_find_table",
            json!({ "pattern": "invoice%lines" }),
        )
        .await
        .unwrap();
    assert_eq!(out["tables"], json!([]));
    db.cleanup().await;
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let mut cfg = SqlToolsConfig::new("postgres://analyst:hunter2@127.0.0.1:1/analytics");
    cfg.acquire_timeout = Duration::from_secs(1);
    let t = SqlTools::new(cfg).unwrap();
    assert_eq!(t.target(), "127.0.0.1:1/analytics");
    let started = Instant::now();
    let err = query(&t, "SELECT 1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        err.message
            .contains("not reachable at 127.0.0.1:1/analytics (ANALYTICS_DATABASE_URL)"),
        "{err}"
    );
    for shown in [err.to_string(), format!("{err:?}"), format!("{t:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn configuration_errors_name_the_variable_and_hide_the_url() {
    let env = |pairs: Vec<(&'static str, &'static str)>| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(SqlToolsConfig::from_lookup(&env(vec![])).unwrap().is_none());
    let cfg = SqlToolsConfig::from_lookup(&env(vec![(
        "ANALYTICS_DATABASE_URL",
        "postgres://u:pw@db:5432/a?sslmode=require",
    )]))
    .unwrap()
    .unwrap();
    assert_eq!(cfg.statement_timeout, Duration::from_millis(5_000));
    assert_eq!(cfg.row_cap, 200);
    assert_eq!(cfg.max_connections, 4);
    assert!(!format!("{cfg:?}").contains("pw@"));
    for (pairs, var) in [
        (
            vec![("ANALYTICS_DATABASE_URL", "mysql://u:secretpw@db/a")],
            "ANALYTICS_DATABASE_URL",
        ),
        (
            vec![(
                "ANALYTICS_DATABASE_URL",
                "postgres://u:secretpw@db:notaport/a",
            )],
            "ANALYTICS_DATABASE_URL",
        ),
        (
            vec![
                ("ANALYTICS_DATABASE_URL", "postgres://db/a"),
                ("ANALYTICS_STATEMENT_TIMEOUT_MS", "soon"),
            ],
            "ANALYTICS_STATEMENT_TIMEOUT_MS",
        ),
        (
            vec![
                ("ANALYTICS_DATABASE_URL", "postgres://db/a"),
                ("ANALYTICS_ROW_CAP", "0"),
            ],
            "ANALYTICS_ROW_CAP",
        ),
    ] {
        let err = SqlToolsConfig::from_lookup(&env(pairs.clone())).unwrap_err();
        assert_eq!(err.field(), Some(var), "{pairs:?}");
        assert!(!err.to_string().contains("secretpw"), "{err}");
    }
}

#[tokio::test]
async fn the_tools_describe_themselves() {
    let t = SqlTools::new(SqlToolsConfig::new("postgres://db/a")).unwrap();
    assert_eq!(t.name(), "sql");
    let names: Vec<String> = t.tools().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "sql_query",
            "sql_list_tables",
            "sql_describe_table",
            "sql_find_table"
        ]
    );
    let err = t.call(&ctx(), "sql_query", json!({})).await.unwrap_err();
    assert_eq!(err.field(), Some("sql"));
}
