//! Readiness while the database is migrated: the server listens at once; `/api/health` answers
//! 503 `STARTING` (not ready) and `/api/health/live` 200 (alive) for as long as the migration
//! waits — here held behind PostgreSQL's migration lock, taken by another session — and the
//! server turns ready when the lock is released.

mod support;

use reqwest::StatusCode;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{PgDatabase, http};

/// The migrators' advisory lock (`dispatch-adapters/src/postgres.rs`: "DISP" 1).
const MIGRATION_LOCK: i64 = 0x4449_5350_0001;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-Atqc", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn status(base: &str, path: &str) -> Option<(StatusCode, Value)> {
    let r = http().get(format!("{base}{path}")).send().await.ok()?;
    let st = r.status();
    Some((st, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn not_ready_while_migrations_wait_and_ready_after() {
    let db = PgDatabase::create();
    // Another session holds the migration lock until it is killed.
    let holder = Kill(
        Command::new("psql")
            .arg(db.url())
            .args([
                "-qc",
                &format!("SELECT pg_advisory_lock({MIGRATION_LOCK}); SELECT pg_sleep(600)"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("psql"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = {}",
        MIGRATION_LOCK & 0xFFFF_FFFF
    );
    while psql(db.url(), &held) != "1" {
        assert!(Instant::now() < deadline, "the lock was not taken");
        std::thread::sleep(Duration::from_millis(20));
    }

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir =
        std::env::temp_dir().join(format!("dispatch-ready-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let _server = Kill(
        Command::new(env!("CARGO_BIN_EXE_dispatch"))
            .arg("serve")
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("PG_DATABASE_URL", db.url())
            .env("DISPATCH_API_KEY", "ready-test-key-0123456789")
            .env("DISPATCH_PASSWORD", "ready-test-pw")
            .env("DISPATCH_WORKERS", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("dispatch serve"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((st, v)) = status(&base, "/api/health/live").await {
            assert_eq!(st, StatusCode::OK, "{v}");
            assert_eq!(v["status"], "starting", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The migration cannot finish while the lock is held: not ready, every time.
    for path in ["/api/health", "/api/issues", "/"] {
        let (st, v) = status(&base, path).await.expect("an answer");
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
        assert_eq!(v["code"], "STARTING", "{path}: {v}");
    }

    // Release: end the holding session (killing psql alone leaves its backend asleep).
    psql(
        db.url(),
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = {}",
            MIGRATION_LOCK & 0xFFFF_FFFF
        ),
    );
    drop(holder);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, v) = status(&base, "/api/health").await.expect("an answer");
        if st == StatusCode::OK {
            assert_eq!(v["status"], "ok", "{v}");
            break;
        }
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(
            Instant::now() < deadline,
            "never ready after the lock was released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, v) = status(&base, "/api/health/live").await.expect("an answer");
    assert_eq!((st, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let _ = std::fs::remove_dir_all(&dir);
}
