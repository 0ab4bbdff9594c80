//! Black-box test harness: starts the real `dispatch` binary on a random port with its own
//! working directory and environment, and talks to it over HTTP.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub base: String,
    pub api_key: String,
    pub password: String,
    pub dir: PathBuf,
    child: Option<Child>,
    pub env: HashMap<String, String>,
    /// The start-up banner's lines after "Dispatch is listening on …".
    pub banner: Vec<String>,
}

pub struct ServerBuilder {
    env: HashMap<String, String>,
    dir: Option<PathBuf>,
    sqlite_only: bool,
}

/// `DISPATCH_TEST_STORE=postgres` runs every test server on its own fresh PostgreSQL database
/// (scripts/test runs the black-box suites once per store); the default is the SQLite file.
pub fn postgres_requested() -> bool {
    std::env::var("DISPATCH_TEST_STORE").is_ok_and(|v| v.eq_ignore_ascii_case("postgres"))
}

impl ServerBuilder {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }
    /// This test needs the SQLite file (it reaches into it), whatever DISPATCH_TEST_STORE says.
    pub fn sqlite_only(mut self) -> Self {
        self.sqlite_only = true;
        self
    }
    /// Reuse a working directory (to restart a server on the same store: the SQLite file, or
    /// the PostgreSQL database recorded there).
    pub fn dir(mut self, d: PathBuf) -> Self {
        self.dir = Some(d);
        self
    }
    pub fn start(self) -> Server {
        let dir = self.dir.unwrap_or_else(|| {
            let d = std::env::temp_dir().join(format!(
                "dispatch-server-test-{}",
                uuid::Uuid::now_v7().simple()
            ));
            std::fs::create_dir_all(&d).expect("temp dir");
            d
        });
        let mut env = self.env;
        if postgres_requested() && !self.sqlite_only && !env.contains_key("PG_DATABASE_URL") {
            // A restart on the same directory finds its database again; these databases are
            // kept after the test (a restarted server needs them) and dropped by the next
            // scripts/test run.
            let marker = dir.join("pg_database_url");
            let url = std::fs::read_to_string(&marker).unwrap_or_else(|_| {
                let url = create_test_database("dispatch_t_");
                std::fs::write(&marker, &url).expect("record the test database");
                url
            });
            env.insert("PG_DATABASE_URL".into(), url);
        }
        env.entry("PORT".into()).or_insert_with(|| "0".into());
        env.entry("HOST".into())
            .or_insert_with(|| "127.0.0.1".into());
        env.entry("DISPATCH_API_KEY".into())
            .or_insert_with(|| "test-api-key-0123456789".into());
        env.entry("DISPATCH_PASSWORD".into())
            .or_insert_with(|| "test-password".into());
        env.entry("RUST_LOG".into())
            .or_insert_with(|| "warn".into());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch"));
        cmd.arg("serve")
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A clean environment: only what the test gives, plus PATH/HOME.
        cmd.env_clear();
        for k in ["PATH", "HOME"] {
            if let Ok(v) = std::env::var(k) {
                cmd.env(k, v);
            }
        }
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start dispatch serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut base = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("Dispatch is listening on ") {
                        base = rest.split_whitespace().next().map(str::to_string);
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("dispatch serve exited early: {status}");
                    }
                }
                Err(_) => break,
            }
        }
        let base = base.expect("dispatch serve printed its address");
        // The rest of the start-up banner, up to its last line.
        let mut banner = Vec::new();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let last = line.trim_start().starts_with("ready in");
                    banner.push(line);
                    if last {
                        break;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        Server {
            base,
            api_key: env["DISPATCH_API_KEY"].clone(),
            password: env["DISPATCH_PASSWORD"].clone(),
            dir,
            child: Some(child),
            env,
            banner,
        }
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            env: HashMap::new(),
            dir: None,
            sqlite_only: false,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The server process's id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no graceful anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client for the tests. reqwest is built with `rustls-no-provider` (the GitHub and
/// Sentry API clients bring it in), so a crypto provider must be installed before a client is.
pub fn http() -> reqwest::Client {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// A fresh PostgreSQL database for one test, dropped (with any sessions still on it) when this
/// value is. The server is at `DATABASE_URL`'s host (scripts/test sets it up), reached with psql.
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let url = create_test_database("dispatch_p_");
        let name = url
            .rsplit_once('/')
            .map(|(_, n)| n.to_string())
            .unwrap_or_default();
        PgDatabase { name, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Some((root, _)) = self.url.rsplit_once('/') {
            psql_admin(
                root,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }
}

/// Creates a fresh database named `<prefix><uuid>` next to `DATABASE_URL`'s; returns its URL.
fn create_test_database(prefix: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/dispatch_test".into());
    let root = base
        .rsplit_once('/')
        .map(|(a, _)| a.to_string())
        .unwrap_or(base);
    let name = format!("{prefix}{}", uuid::Uuid::now_v7().simple());
    psql_admin(&root, &format!("CREATE DATABASE {name}"));
    format!("{root}/{name}")
}

fn psql_admin(root: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .arg(format!("{root}/postgres"))
        .arg("-qc")
        .arg(sql)
        .output()
        .unwrap_or_else(|e| {
            panic!("psql is needed for the PostgreSQL tests ({e}); run scripts/test, which sets up PostgreSQL")
        });
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Hex HMAC-SHA256 of `body` under `key` (GitHub's and Sentry's signatures).
pub fn hmac_hex(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// An authenticated API call; the status and the JSON body (`Null` when there is none).
pub async fn call(
    s: &Server,
    m: reqwest::Method,
    p: &str,
    body: Option<serde_json::Value>,
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut r = http().request(m, s.url(p)).bearer_auth(&s.api_key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("request");
    let st = r.status();
    (st, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `call` with GET.
pub async fn get(s: &Server, p: &str) -> (reqwest::StatusCode, serde_json::Value) {
    call(s, reqwest::Method::GET, p, None).await
}

/// `call` with POST and a JSON body.
pub async fn post(
    s: &Server,
    p: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    call(s, reqwest::Method::POST, p, Some(body)).await
}

/// `call` with PATCH and a JSON body.
pub async fn patch(
    s: &Server,
    p: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    call(s, reqwest::Method::PATCH, p, Some(body)).await
}

/// `call` with PUT and a JSON body.
pub async fn put(
    s: &Server,
    p: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    call(s, reqwest::Method::PUT, p, Some(body)).await
}

/// A git repository with one commit on `main` under `dir/repo`.
pub fn plain_repo(dir: &std::path::Path) -> std::path::PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
            .args(args)
            .current_dir(&repo)
            .status()
            .expect("git");
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "demo\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    repo
}

/// A git repository (one commit on `main`) under `dir/repo` whose `post-checkout` hook blocks
/// until something is written to the FIFO `dir/gate.fifo`: a dispatch that prepares a worktree
/// is in flight for exactly as long as the test wants. Returns (repository, FIFO).
pub fn repo_with_blocking_checkout(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let repo = plain_repo(dir);
    let fifo = dir.join("gate.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let hook = repo.join(".git/hooks/post-checkout");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ncat '{}' >/dev/null\n", fifo.display()),
    )
    .expect("hook");
    assert!(
        Command::new("chmod")
            .arg("+x")
            .arg(&hook)
            .status()
            .expect("chmod")
            .success()
    );
    (repo, fifo)
}
