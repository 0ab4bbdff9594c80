//! Black-box tests of the live streams (SSE): the board stream and an issue's activity and
//! terminal stream, including resume with `Last-Event-ID` and ending on shutdown.

mod support;

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Server, post};

fn client() -> reqwest::Client {
    support::http()
}

/// No total timeout: streams stay open; reads are bounded one by one.
fn stream_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn server() -> Server {
    Server::builder().env("SSE_KEEPALIVE_SECONDS", "1").start()
}

#[derive(Debug, Clone, Default)]
struct Msg {
    id: Option<String>,
    data: Option<Value>,
    comment: Option<String>,
}

#[derive(Debug)]
enum Next {
    Msg(Msg),
    End,
    Timeout,
}

struct Sse {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buf: Vec<u8>,
}

impl Sse {
    async fn open(req: reqwest::RequestBuilder) -> Result<Sse, StatusCode> {
        let r = req.send().await.unwrap();
        if r.status() != StatusCode::OK {
            return Err(r.status());
        }
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Ok(Sse {
            body: r.bytes_stream().map(|b| b.map(|b| b.to_vec())).boxed(),
            buf: Vec::new(),
        })
    }

    async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let block = String::from_utf8_lossy(&raw).into_owned();
                let mut m = Msg::default();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        m.comment = Some(c.trim().to_string());
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    } else if let Some(i) = line.strip_prefix("id:") {
                        m.id = Some(i.trim().to_string());
                    }
                }
                if !data.is_empty() {
                    m.data = Some(
                        serde_json::from_str(&data)
                            .unwrap_or_else(|e| panic!("data is JSON ({e}): {data}")),
                    );
                }
                return Next::Msg(m);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Timeout,
                Ok(None) | Ok(Some(Err(_))) => return Next::End,
                Ok(Some(Ok(b))) => self.buf.extend_from_slice(&b),
            }
        }
    }

    /// The next event with data other than a heartbeat.
    async fn event(&mut self, wait: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Msg(m) if m.data.as_ref().is_some_and(|d| d["type"] != "heartbeat") => {
                    return Some(m);
                }
                Next::Msg(_) => continue,
                Next::End | Next::Timeout => return None,
            }
        }
    }

    /// The next event of `kind` (others are skipped).
    async fn event_of(&mut self, kind: &str, wait: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.event(left).await?;
            if m.data.as_ref().is_some_and(|d| d["type"] == kind) {
                return Some(m);
            }
        }
    }

    /// Every terminal chunk arriving within `wait` (until quiet).
    async fn terminal_until_quiet(&mut self, wait: Duration) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = self.event(wait).await {
            if m.data
                .as_ref()
                .is_some_and(|d| d["type"] == "terminal_output")
            {
                out.push(m);
            }
        }
        out
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn open_issue_stream(s: &Server, issue: &str, last_event_id: Option<&str>) -> Sse {
    let mut req = stream_client()
        .get(s.url(&format!("/api/issues/{issue}/activity/stream")))
        .bearer_auth(&s.api_key);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let mut sse = Sse::open(req).await.expect("stream opens");
    let hello = sse.event(WAIT).await.expect("connected event");
    assert_eq!(hello.data.as_ref().unwrap()["type"], "connected");
    sse
}

/// An issue with a run (the test runner fails runs at once; the run still takes output).
async fn issue_with_run(s: &Server) -> (String, String) {
    let (st, issue) = post(s, "/api/issues", json!({ "title": "Streaming issue" })).await;
    assert_eq!(st, StatusCode::CREATED, "{issue}");
    let ident = issue["identifier"].as_str().unwrap().to_string();
    let (st, spawn) = post(
        s,
        &format!("/api/issues/{ident}/spawn"),
        json!({ "type": "research" }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{spawn}");
    let run = spawn["dispatchId"].as_str().unwrap().to_string();
    settle(s, &ident).await;
    (ident, run)
}

/// Waits until the issue's current run has ended (the test runner fails it at once), so that
/// the engine's own activities are recorded before a test starts watching.
async fn settle(s: &Server, ident: &str) {
    for _ in 0..100 {
        let r = client()
            .get(s.url(&format!("/api/issues/{ident}/runs/current")))
            .bearer_auth(&s.api_key)
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if matches!(
            v["status"].as_str(),
            Some("failed" | "completed" | "cancelled" | "timed_out")
        ) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run of {ident} never ended");
}

async fn chunk(s: &Server, ident: &str, text: &str) -> u64 {
    let (st, v) = post(
        s,
        &format!("/api/issues/{ident}/terminal"),
        json!({ "content": text }),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["seq"].as_u64().unwrap()
}

fn content(m: &Msg) -> String {
    m.data.as_ref().unwrap()["data"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn board_stream_sends_connected_keepalives_and_issue_events() {
    let s = server();
    let req = stream_client()
        .get(s.url("/api/board/stream"))
        .bearer_auth(&s.api_key);
    let mut sse = Sse::open(req).await.expect("board stream opens");
    let hello = sse.event(WAIT).await.unwrap();
    assert_eq!(hello.data.as_ref().unwrap()["type"], "connected");
    assert!(hello.data.as_ref().unwrap()["timestamp"].is_string());

    // `: ping` keep-alive comments (SSE_KEEPALIVE_SECONDS=1).
    let mut pinged = false;
    for _ in 0..5 {
        if let Next::Msg(m) = sse.next(Duration::from_secs(3)).await
            && m.comment.as_deref() == Some("ping")
        {
            pinged = true;
            break;
        }
    }
    assert!(pinged, "a keep-alive comment arrives");

    let (_, issue) = post(
        &s,
        "/api/issues",
        json!({ "title": "Live on the board", "priority": "P2" }),
    )
    .await;
    let ev = sse
        .event_of("issue_created", WAIT)
        .await
        .expect("issue_created");
    let d = ev.data.unwrap();
    assert_eq!(d["issue"]["identifier"], issue["identifier"]);
    assert_eq!(d["issue"]["title"], "Live on the board");
    assert_eq!(d["issue"]["status"]["name"], "Backlog");
    assert!(d["timestamp"].is_string());
    assert!(ev.id.is_some(), "events carry an id");

    // A move carries the previous column.
    let statuses: Value = client()
        .get(s.url("/api/statuses"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let target = statuses
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "In Progress")
        .unwrap()["id"]
        .clone();
    let ident = issue["identifier"].as_str().unwrap();
    let r = client()
        .patch(s.url(&format!("/api/issues/{ident}")))
        .bearer_auth(&s.api_key)
        .json(&json!({ "statusId": target }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let moved = sse
        .event_of("issue_moved", WAIT)
        .await
        .expect("issue_moved")
        .data
        .unwrap();
    assert_eq!(moved["previousStatusId"], issue["status_id"]);
    assert_eq!(moved["issue"]["status_id"], target);

    let r = client()
        .delete(s.url(&format!("/api/issues/{ident}")))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let del = sse
        .event_of("issue_deleted", WAIT)
        .await
        .expect("issue_deleted")
        .data
        .unwrap();
    assert_eq!(del["identifier"], ident);
    assert_eq!(del["issueId"], issue["id"]);
    assert!(del.get("issue").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn board_stream_accepts_a_session_cookie() {
    let s = server();
    let login = client()
        .post(s.url("/api/auth"))
        .json(&json!({ "password": s.password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let req = stream_client()
        .get(s.url("/api/board/stream"))
        .header("cookie", cookie);
    let mut sse = Sse::open(req).await.expect("cookie opens the stream");
    assert_eq!(
        sse.event(WAIT).await.unwrap().data.unwrap()["type"],
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_require_authentication() {
    let s = server();
    let (ident, _) = issue_with_run(&s).await;
    for path in [
        "/api/board/stream".to_string(),
        format!("/api/issues/{ident}/activity/stream"),
    ] {
        let r = stream_client().get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = stream_client()
            .get(s.url(&path))
            .header("cookie", "dispatch_session=x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a forged cookie"
        );
        let r = stream_client()
            .get(s.url(&path))
            .bearer_auth("wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} with a wrong key"
        );
    }
    let r = stream_client()
        .get(s.url("/api/issues/NOPE-999/activity/stream"))
        .bearer_auth(&s.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn terminal_chunks_stream_live_and_resume_exactly_after_last_event_id() {
    let s = server();
    let (ident, run) = issue_with_run(&s).await;
    let mut sse = open_issue_stream(&s, &ident, None).await;
    for n in 1..=3 {
        assert_eq!(chunk(&s, &ident, &format!("line {n}")).await, n);
    }
    let got = sse.terminal_until_quiet(Duration::from_secs(2)).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for (i, m) in got.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(m.id.as_deref(), Some(format!("t:{run}:{n}").as_str()));
        let d = &m.data.as_ref().unwrap()["data"];
        assert_eq!(d["seq"], n);
        assert_eq!(d["runId"], run.as_str());
        assert_eq!(d["content"], format!("line {n}\n"));
        assert!(d["timestamp"].is_string());
    }
    let last_id = got[2].id.clone().unwrap();
    drop(sse);

    // While nobody watches, output goes on.
    for n in 4..=6 {
        chunk(&s, &ident, &format!("line {n}")).await;
    }
    let mut sse = open_issue_stream(&s, &ident, Some(&last_id)).await;
    // Live output right after the reconnect must neither duplicate nor overtake the backlog.
    chunk(&s, &ident, "line 7").await;
    let got = sse.terminal_until_quiet(Duration::from_secs(2)).await;
    let lines: Vec<String> = got.iter().map(content).collect();
    assert_eq!(lines, ["line 4\n", "line 5\n", "line 6\n", "line 7\n"]);
    let ids: Vec<String> = got.iter().map(|m| m.id.clone().unwrap()).collect();
    assert_eq!(
        ids,
        (4..=7).map(|n| format!("t:{run}:{n}")).collect::<Vec<_>>()
    );
    drop(sse);

    // Resuming from the middle replays exactly the rest.
    let mut sse = open_issue_stream(&s, &ident, Some(&format!("t:{run}:5"))).await;
    let got = sse.terminal_until_quiet(Duration::from_secs(2)).await;
    assert_eq!(
        got.iter().map(content).collect::<Vec<_>>(),
        ["line 6\n", "line 7\n"]
    );

    // A cursor naming a run of another issue replays nothing.
    let (other, other_run) = issue_with_run(&s).await;
    chunk(&s, &other, "secret").await;
    let mut sse = open_issue_stream(&s, &ident, Some(&format!("t:{other_run}:0"))).await;
    assert!(
        sse.terminal_until_quiet(Duration::from_secs(1))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_includes_later_runs_from_their_start() {
    let s = server();
    let (ident, first) = issue_with_run(&s).await;
    chunk(&s, &ident, "first a").await;
    chunk(&s, &ident, "first b").await;
    // The test runner fails the run at once; wait until the issue has no active run.
    let mut second = None;
    for _ in 0..50 {
        let (st, v) = post(
            &s,
            &format!("/api/issues/{ident}/spawn"),
            json!({ "type": "research" }),
        )
        .await;
        if st == StatusCode::OK {
            second = v["dispatchId"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = second.expect("a second run starts once the first ended");
    settle(&s, &ident).await;
    assert_ne!(first, second);
    chunk(&s, &ident, "second a").await;
    chunk(&s, &ident, "second b").await;

    let mut sse = open_issue_stream(&s, &ident, Some(&format!("t:{first}:1"))).await;
    let got = sse.terminal_until_quiet(Duration::from_secs(2)).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m.data.as_ref().unwrap()["data"]["runId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                content(m),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (first.clone(), "first b\n".to_string()),
            (second.clone(), "second a\n".to_string()),
            (second.clone(), "second b\n".to_string()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn activities_stream_and_resume_after_the_last_one_seen() {
    let s = server();
    let (ident, run) = issue_with_run(&s).await;
    let mut sse = open_issue_stream(&s, &ident, None).await;
    let (st, a1) = post(
        &s,
        &format!("/api/issues/{ident}/activity"),
        json!({ "type": "thought", "content": "one" }),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{a1}");
    let m = sse
        .event_of("activity", WAIT)
        .await
        .expect("activity event");
    assert_eq!(m.data.as_ref().unwrap()["data"]["content"], "one");
    assert_eq!(
        m.id.as_deref(),
        Some(format!("a:{}", a1["id"].as_str().unwrap()).as_str())
    );

    // A terminal chunk after the activity: its id carries both cursors.
    chunk(&s, &ident, "out 1").await;
    let t = sse.event_of("terminal_output", WAIT).await.unwrap();
    let combined = t.id.clone().unwrap();
    assert_eq!(
        combined,
        format!("t:{run}:1;a:{}", a1["id"].as_str().unwrap())
    );
    drop(sse);

    let (_, a2) = post(
        &s,
        &format!("/api/issues/{ident}/activity"),
        json!({ "type": "action", "content": "two" }),
    )
    .await;
    let (_, a3) = post(
        &s,
        &format!("/api/issues/{ident}/activity"),
        json!({ "type": "observation", "content": "three" }),
    )
    .await;
    chunk(&s, &ident, "out 2").await;

    let mut sse = open_issue_stream(&s, &ident, Some(&combined)).await;
    let mut acts = Vec::new();
    let mut term = Vec::new();
    while let Some(m) = sse.event(Duration::from_secs(2)).await {
        let d = m.data.unwrap();
        match d["type"].as_str() {
            Some("activity") => acts.push(d["data"]["id"].clone()),
            Some("terminal_output") => term.push(d["data"]["content"].clone()),
            _ => {}
        }
    }
    assert_eq!(
        acts,
        [a2["id"].clone(), a3["id"].clone()],
        "exactly the missed activities, oldest first"
    );
    assert_eq!(term, [json!("out 2\n")], "and exactly the missed output");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_end_when_the_server_shuts_down() {
    let mut s = server();
    let (ident, _) = issue_with_run(&s).await;
    let mut board = Sse::open(
        stream_client()
            .get(s.url("/api/board/stream"))
            .bearer_auth(&s.api_key),
    )
    .await
    .unwrap();
    let mut issue = open_issue_stream(&s, &ident, None).await;
    assert!(board.event(WAIT).await.is_some());
    let status = tokio::task::spawn_blocking(move || {
        let st = s.terminate();
        (s, st)
    })
    .await
    .unwrap();
    let (_s, exit) = status;
    let exit = exit.expect("the server exits on SIGTERM although streams are open");
    assert!(exit.success(), "{exit:?}");
    for sse in [&mut board, &mut issue] {
        let mut ended = false;
        for _ in 0..20 {
            match sse.next(Duration::from_secs(1)).await {
                Next::End => {
                    ended = true;
                    break;
                }
                Next::Msg(_) => continue,
                Next::Timeout => break,
            }
        }
        assert!(ended, "the stream ended");
    }
}
