//! `dispatch chat` driven through a pseudo-terminal against a running server whose model is a
//! scripted fake of the streaming Messages API: the answer streams in, tool calls show as
//! lines, a proposal asks to be confirmed and `y` dispatches it; Ctrl-C cancels a turn and a
//! second Ctrl-C quits; the session is resumed by the next `dispatch chat`.

mod support;

use dispatch_core::testkit::fake_anthropic::stream_words;
use expectrl::{ControlCode, Session};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Server, get};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

struct Script {
    replies: Vec<(String, Option<Duration>)>,
    n: Arc<AtomicUsize>,
}

impl Respond for Script {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let i = self
            .n
            .fetch_add(1, Ordering::SeqCst)
            .min(self.replies.len() - 1);
        let (body, delay) = &self.replies[i];
        let mut r = ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(body.clone());
        if let Some(d) = delay {
            r = r.set_delay(*d);
        }
        r
    }
}

fn chat(s: &Server, home: &std::path::Path) -> Session {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dispatch"));
    cmd.arg("chat")
        .arg("--url")
        .arg(&s.base)
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .env("DISPATCH_API_KEY", &s.api_key)
        .env("DISPATCH_PASSWORD", &s.password);
    let mut p = Session::spawn(cmd).expect("spawn dispatch chat in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_in_a_terminal_proposes_confirms_cancels_and_resumes() {
    let fake = MockServer::start().await;
    let n = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .respond_with(Script {
            replies: vec![
                (
                    stream_words(
                        "claude-fake-1",
                        "Nothing similar is open.",
                        Some((
                            "toolu_01",
                            "dispatch_investigation",
                            json!({"title": "Checkout times out", "description": "p99 above 30 s"}),
                        )),
                    ),
                    None,
                ),
                (
                    stream_words(
                        "claude-fake-1",
                        "I proposed an investigation; confirm it below.",
                        None,
                    ),
                    None,
                ),
                // Never answered within the test: the turn Ctrl-C cancels.
                (
                    stream_words("claude-fake-1", "too late", None),
                    Some(Duration::from_secs(600)),
                ),
            ],
            n: n.clone(),
        })
        .mount(&fake)
        .await;
    let s = Server::builder()
        .env("ANTHROPIC_API_KEY", "sk-ant-chat-test")
        .env("ANTHROPIC_BASE_URL", &fake.uri())
        .env("ORCHESTRATOR_MODEL", "claude-fake-1")
        .env("DISPATCH_WORKERS", "false")
        .start();
    let home = s.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let s = Arc::new(s);

    let (s2, home2, n2) = (s.clone(), home.clone(), n.clone());
    tokio::task::spawn_blocking(move || {
        let mut p = chat(&s2, &home2);
        p.expect("› ").unwrap();
        p.send_line("checkout keeps timing out, please look into it")
            .unwrap();
        p.expect("⚙ dispatch_investigation").unwrap();
        p.expect("✓ dispatch_investigation").unwrap();
        p.expect("confirm it below.").unwrap();
        p.expect("Proposal:").unwrap();
        p.expect("Checkout times out").unwrap();
        p.expect("gates: allowed now").unwrap();
        p.expect("confirm? [y/N] ").unwrap();
        p.send_line("y").unwrap();
        p.expect("→ dispatched").unwrap();
        p.expect("› ").unwrap();
        // A slow answer: Ctrl-C cancels it and the prompt comes back.
        p.send_line("what else is there?").unwrap();
        // The model has the request (the client is inside the turn): now Ctrl-C.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while n2.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the turn never reached the model"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        p.send(ControlCode::EndOfText).unwrap();
        p.expect("[cancelled]").unwrap();
        p.expect("› ").unwrap();
        // Ctrl-C at the prompt quits.
        p.send(ControlCode::EndOfText).unwrap();
        p.expect(expectrl::Eof).unwrap();
    })
    .await
    .unwrap();

    let (_, stats) = get(&s, "/api/spawns/stats").await;
    assert_eq!(stats["queued"], 1, "{stats}");
    let (_, issues) = get(&s, "/api/issues").await;
    assert_eq!(issues[0]["title"], "Checkout times out");

    // The next chat resumes the session; no text of its ANSI-free output has escape codes.
    let (s2, home2) = (s.clone(), home.clone());
    let seen = tokio::task::spawn_blocking(move || {
        let mut p = chat(&s2, &home2);
        let m = p.expect("› ").unwrap();
        let seen = String::from_utf8_lossy(m.before()).to_string();
        p.send_line("/quit").unwrap();
        p.expect(expectrl::Eof).unwrap();
        seen
    })
    .await
    .unwrap();
    assert!(seen.contains("resumed session"), "{seen}");
    assert!(seen.contains("checkout keeps timing out"), "{seen}");
    assert!(
        !seen.contains('\u{1b}'),
        "NO_COLOR output has no escape codes: {seen:?}"
    );
    let remembered: Value = serde_json::from_str(
        &std::fs::read_to_string(home.join(".local/state/dispatch/chat.json")).unwrap(),
    )
    .unwrap();
    assert!(remembered[&s.base].is_string(), "{remembered}");
}
