//! Issue 10, black box: the server is SIGKILLed during a burst of alerts that each spawn an
//! agent at once (local runner), then restarted on the same store. Every alert the server
//! acknowledged has its issue; no run's agent was started twice; and, within 30 s of the
//! restart, no run is left queued, dispatching, or running without a live agent.
//!
//! Runs on the SQLite file, and on PostgreSQL in scripts/test's second pass.

mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::Server;

const ALERTS: usize = 24;
/// The server is killed once this many alerts were acknowledged (the rest are in flight).
const KILL_AFTER: usize = 8;

fn alert_body(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "receiver": "dispatch-webhook",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {
                "alertname": format!("burst-{i}"),
                "source": "checkout-api",
                "feature": format!("feature{i}"),
                "level": "error",
            },
            "annotations": {
                "msg": format!("Burst{i}Error: distinct failure number {i}"),
                "summary": "errors above threshold",
            },
            "startsAt": "2026-12-04T09:41:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": format!("burst{i:04}"),
            "values": { "A": 3 },
        }],
    }))
    .expect("json")
}

/// An agent that records its start (run id and pid) and then works until it is killed.
fn agent_script(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("agent.sh");
    std::fs::write(
        &script,
        "#!/usr/bin/env bash\n\
         printf '%s %s\\n' \"$DISPATCH_RUN_ID\" \"$$\" >> \"$AGENT_LOG\"\n\
         printf '%s\\n' '{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"claude-test-1\",\"tools\":[]}'\n\
         exec sleep 1000\n",
    )
    .expect("script");
    assert!(
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .expect("chmod")
            .success()
    );
    script
}

/// Run id → the pids of the agents started for it.
fn agent_starts(log: &Path) -> HashMap<String, Vec<i32>> {
    let mut out: HashMap<String, Vec<i32>> = HashMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let mut parts = line.split_whitespace();
        if let (Some(run), Some(pid)) = (parts.next(), parts.next())
            && let Ok(pid) = pid.parse()
        {
            out.entry(run.to_string()).or_default().push(pid);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_a_burst_of_spawning_alerts_loses_nothing_and_strands_nothing() {
    let dir =
        std::env::temp_dir().join(format!("dispatch-crash-{}", uuid::Uuid::now_v7().simple()));
    let server_dir = dir.join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let repo = support::plain_repo(&dir);
    let script = agent_script(&dir);
    let log = dir.join("agents.log");
    let start = || {
        Server::builder()
            .dir(server_dir.clone())
            .env("DISPATCH_API_KEY", "dsp_crash_recovery_test_key")
            .env("DISPATCH_LOCAL_REPO", &repo.to_string_lossy())
            .env(
                "DISPATCH_WORKTREE_DIR",
                &dir.join("worktrees").to_string_lossy(),
            )
            .env(
                "DISPATCH_AGENT_COMMAND",
                &format!("{} {{prompt}}", script.display()),
            )
            .env("AGENT_LOG", &log.to_string_lossy())
            .env("SPAWN_DELAY_MINUTES", "0")
            .env("MIN_EVENT_COUNT_TO_SPAWN", "1")
            .env("MAX_CONCURRENT_SPAWNS", "1000")
            .env("MAX_CONCURRENT_SPAWNS_ERROR", "1000")
            .env("DAILY_SPAWN_BUDGET", "1000")
            .env("DAILY_SPAWN_BUDGET_ERROR", "1000")
            .env("DAILY_COST_LIMIT_USD", "100000")
            .start()
    };
    let mut s = start();
    let url = s.url("/api/loki/webhook");
    let key = s.api_key.clone();

    // The burst: every alert at once; the server dies once KILL_AFTER were acknowledged.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String)>();
    let mut tasks = Vec::new();
    for i in 0..ALERTS {
        let (url, key, tx) = (url.clone(), key.clone(), acked_tx.clone());
        tasks.push(tokio::spawn(async move {
            let r = support::http()
                .post(url)
                .bearer_auth(key)
                .header("Content-Type", "application/json")
                .body(alert_body(i))
                .send()
                .await;
            if let Ok(r) = r
                && r.status().is_success()
                && let Ok(v) = r.json::<Value>().await
                && let Some(ident) = v["results"][0]["issueIdentifier"].as_str()
            {
                let _ = tx.send((i, ident.to_string()));
            }
        }));
    }
    drop(acked_tx);
    let mut acked: Vec<(usize, String)> = Vec::new();
    while let Some(a) = acked_rx.recv().await {
        acked.push(a);
        if acked.len() == KILL_AFTER {
            s.kill();
            break;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    // Answers that arrived before the kill landed count as acknowledged too.
    while let Ok(a) = acked_rx.try_recv() {
        acked.push(a);
    }
    assert!(acked.len() >= KILL_AFTER.min(ALERTS), "{acked:?}");

    let s = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (issues, runs) = loop {
        let (st, issues) = support::get(&s, "/api/issues?limit=200").await;
        assert_eq!(st, 200, "{issues}");
        let issues = issues.as_array().cloned().unwrap_or_default();
        let mut runs = Vec::new();
        for i in &issues {
            let ident = i["identifier"].as_str().unwrap();
            let (_, r) = support::get(&s, &format!("/api/issues/{ident}/runs")).await;
            runs.extend(r.as_array().cloned().unwrap_or_default());
        }
        let starts = agent_starts(&log);
        let stranded: Vec<&Value> = runs
            .iter()
            .filter(|r| match r["status"].as_str() {
                Some("queued" | "dispatching") => true,
                Some("running") => !starts
                    .get(r["id"].as_str().unwrap_or_default())
                    .is_some_and(|pids| pids.iter().any(|p| alive(*p))),
                _ => false,
            })
            .collect();
        if stranded.is_empty() {
            break (issues, runs);
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the restart these runs are still stranded: {stranded:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Every acknowledged alert has its issue.
    let idents: HashSet<&str> = issues
        .iter()
        .filter_map(|i| i["identifier"].as_str())
        .collect();
    for (i, ident) in &acked {
        assert!(
            idents.contains(ident.as_str()),
            "alert {i} was acknowledged as {ident}, which is gone"
        );
    }
    // No run's agent was started twice.
    let starts = agent_starts(&log);
    for (run, pids) in &starts {
        assert_eq!(
            pids.len(),
            1,
            "run {run} had {} agents: {pids:?}",
            pids.len()
        );
    }
    // One run per issue at most (each alert spawned once), and the agents that run belong to
    // runs the store knows.
    let mut per_issue: HashMap<&str, usize> = HashMap::new();
    for r in &runs {
        *per_issue
            .entry(r["issue_id"].as_str().unwrap_or_default())
            .or_default() += 1;
    }
    assert!(per_issue.values().all(|n| *n == 1), "{per_issue:?}");
    let known: HashSet<&str> = runs.iter().filter_map(|r| r["id"].as_str()).collect();
    for run in starts.keys() {
        assert!(
            known.contains(run.as_str()),
            "an agent ran for unknown run {run}"
        );
    }

    for pids in starts.values() {
        for p in pids {
            // SAFETY: ends the test's own agents (their process groups).
            unsafe {
                libc::kill(-*p, libc::SIGKILL);
                libc::kill(*p, libc::SIGKILL);
            }
        }
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
