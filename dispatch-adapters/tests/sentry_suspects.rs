//! Suspect commits of a new Sentry issue (spec §4.2): the Sentry API enrichment plus GitHub
//! correlation, both against local fakes (wiremock) answering in the real REST shapes —
//! `GET /repos/{o}/{r}/commits` (list), `GET /repos/{o}/{r}/commits/{sha}` (with `files`),
//! `GET /repos/{o}/{r}/deployments` — as GitHub's REST reference documents them.
#![cfg(all(feature = "sentry-api", feature = "github"))]

use dispatch_adapters::github::{GithubConfig, GithubSuspectFinder, SuspectPolicy};
use dispatch_adapters::sentry::SentryAlertSource;
use dispatch_adapters::sentry::api::SentryApiConfig;
use dispatch_core::ports::{AlertRequest, AlertSource};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ISSUE_CREATED: &[u8] = include_bytes!("fixtures/sentry/issue-created.json");
const EVENTS: &str = include_str!("fixtures/sentry/issue-events-full.built.json");
const EVENTS_PATH: &str = "/api/0/organizations/example-org/issues/1170820242/events/";
// firstSeen of the fixture issue is 2019-08-19T20:58:37.391Z.
const SINCE: &str = "2019-08-17T20:58:37Z";
const UNTIL: &str = "2019-08-19T20:58:37Z";

const SUSPECT: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const README_ONLY: &str = "7638417db6d59f3c431d3e1f261cc637155684cd";
const GONE: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567";

/// The fixture event with its in-app frame in `src/components/Runner.tsx`.
async fn sentry_api() -> MockServer {
    let mut events: Value = serde_json::from_str(EVENTS).unwrap();
    let frames = events[0]["entries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["type"] == "exception")
        .unwrap()["data"]["values"][0]["stacktrace"]["frames"]
        .as_array_mut()
        .unwrap();
    for f in frames.iter_mut().filter(|f| f["inApp"] == true) {
        f["filename"] = json!("./src/components/Runner.tsx");
        f["absPath"] = json!("webpack:///./src/components/Runner.tsx");
    }
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(events))
        .mount(&server)
        .await;
    server
}

fn list_item(sha: &str, message: &str, date: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/web/commits/{sha}"),
        "sha": sha,
        "node_id": "MDY6Q29tbWl0NmRjYjA5YjViNTc4NzVmMzM0ZjYxYWViZWQ2OTVlMmU0MTkzZGI1ZQ==",
        "html_url": format!("https://github.com/acme/web/commit/{sha}"),
        "comments_url": format!("https://api.github.com/repos/acme/web/commits/{sha}/comments"),
        "commit": {
            "url": format!("https://api.github.com/repos/acme/web/git/commits/{sha}"),
            "author": { "name": "Mona Octocat", "email": "mona@example.com", "date": date },
            "committer": { "name": "GitHub", "email": "noreply@github.com", "date": date },
            "message": message,
            "tree": { "url": "https://api.github.com/repos/acme/web/tree/6dcb09b5b57875f334f61aebed695e2e4193db5e", "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e" },
            "comment_count": 0,
            "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null }
        },
        "author": { "login": "octocat", "id": 1, "type": "User", "site_admin": false },
        "committer": { "login": "web-flow", "id": 19864447, "type": "User", "site_admin": false },
        "parents": [{ "url": "https://api.github.com/repos/acme/web/commits/7638417db6d59f3c431d3e1f261cc637155684cd", "sha": "7638417db6d59f3c431d3e1f261cc637155684cd" }]
    })
}

fn detail(sha: &str, message: &str, date: &str, files: &[&str]) -> Value {
    let mut v = list_item(sha, message, date);
    v["stats"] = json!({ "additions": 104, "deletions": 4, "total": 108 });
    v["files"] = files
        .iter()
        .map(|f| {
            json!({
                "sha": "bbcd538c8e72b8c175046e27cc8f907076331401",
                "filename": f,
                "status": "modified",
                "additions": 103,
                "deletions": 21,
                "changes": 124,
                "blob_url": format!("https://github.com/acme/web/blob/{sha}/{f}"),
                "raw_url": format!("https://github.com/acme/web/raw/{sha}/{f}"),
                "contents_url": format!("https://api.github.com/repos/acme/web/contents/{f}?ref={sha}"),
                "patch": "@@ -132,7 +132,7 @@ module Test @@ -1000,7 +1000,7 @@ module Test"
            })
        })
        .collect();
    v
}

fn deployment(id: i64, env: &str, created: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/acme/web/deployments/{id}"),
        "id": id,
        "node_id": "MDEwOkRlcGxveW1lbnQx",
        "sha": "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        "ref": "main",
        "task": "deploy",
        "payload": {},
        "original_environment": env,
        "environment": env,
        "description": "Deploy request from hubot",
        "creator": { "login": "deploy-bot", "id": 2, "type": "Bot", "site_admin": false },
        "created_at": created,
        "updated_at": created,
        "statuses_url": format!("https://api.github.com/repos/acme/web/deployments/{id}/statuses"),
        "repository_url": "https://api.github.com/repos/acme/web",
        "transient_environment": false,
        "production_environment": true
    })
}

async fn github(delay: Option<Duration>) -> MockServer {
    let gh = MockServer::start().await;
    let mut list = ResponseTemplate::new(200).set_body_json(json!([
        list_item(
            SUSPECT,
            "Runner: call blooopy before render\n\nLonger body.",
            "2019-08-19T18:01:00Z"
        ),
        list_item(README_ONLY, "Docs", "2019-08-19T10:00:00Z"),
        list_item(GONE, "Force-pushed away", "2019-08-18T10:00:00Z"),
    ]));
    if let Some(d) = delay {
        list = list.set_delay(d);
    }
    Mock::given(method("GET"))
        .and(path("/repos/acme/web/commits"))
        .and(query_param("sha", "main"))
        .and(query_param("since", SINCE))
        .and(query_param("until", UNTIL))
        .and(query_param("per_page", "20"))
        .and(header("authorization", "Bearer ghp_test_token"))
        .and(header("x-github-api-version", "2022-11-28"))
        .respond_with(list)
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{SUSPECT}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(detail(
            SUSPECT,
            "Runner: call blooopy before render\n\nLonger body.",
            "2019-08-19T18:01:00Z",
            &[
                "src/components/Runner.tsx",
                "src/components/Runner.test.tsx",
            ],
        )))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{README_ONLY}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(detail(
            README_ONLY,
            "Docs",
            "2019-08-19T10:00:00Z",
            &["README.md"],
        )))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/web/commits/{GONE}")))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "No commit found for SHA: 0a1b2c3d",
            "documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit",
            "status": "422"
        })))
        .mount(&gh)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/web/deployments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            deployment(42, "production", "2019-08-19T18:30:00Z"),
            deployment(41, "production", "2019-08-10T09:00:00Z"),
        ])))
        .mount(&gh)
        .await;
    gh
}

fn source(sentry: &MockServer, gh: &MockServer, budget: Duration) -> SentryAlertSource {
    let mut cfg = SentryApiConfig::new("sntrys_test_token", "example-org");
    cfg.api_url = sentry.uri();
    let mut g = GithubConfig::new("ghp_test_token", "acme", "web");
    g.api_url = gh.uri();
    let policy = SuspectPolicy {
        budget,
        ..SuspectPolicy::default()
    };
    let finder = GithubSuspectFinder::new(&g, policy).expect("client");
    SentryAlertSource::with_api(&cfg)
        .expect("client")
        .with_suspects(Arc::new(finder))
}

async fn description(src: &SentryAlertSource) -> String {
    let h = vec![("sentry-hook-resource".to_string(), "issue".to_string())];
    let mut b = src
        .parse(AlertRequest {
            headers: &h,
            body: ISSUE_CREATED,
        })
        .await
        .expect("parses");
    b.events.remove(0).description.expect("description")
}

#[tokio::test]
async fn commits_touching_the_stack_trace_and_deploys_in_the_window_are_suspected() {
    let sentry = sentry_api().await;
    let gh = github(None).await;
    let d = description(&source(&sentry, &gh, Duration::from_secs(5))).await;
    assert!(d.contains("## Stack Trace"), "{d}");
    let section = d
        .split("## Suspected Cause\n")
        .nth(1)
        .expect("a Suspected Cause section")
        .split("\n## ")
        .next()
        .unwrap();
    assert!(
        section.contains(&format!(
            "- [`6dcb09b`](https://github.com/acme/web/commit/{SUSPECT}) Runner: call blooopy before render by octocat (2019-08-19T18:01:00Z): `src/components/Runner.tsx`"
        )),
        "{section}"
    );
    assert!(section.contains("(1 of 3 inspected)"), "{section}");
    assert!(
        !section.contains("7638417"),
        "README-only commit: {section}"
    );
    assert!(!section.contains("Runner.test.tsx"), "{section}");
    assert!(
        section.contains("- production: `main` @ `a84d88e` at 2019-08-19 18:30 UTC by deploy-bot"),
        "{section}"
    );
    assert!(
        !section.contains("2019-08-10"),
        "outside the window: {section}"
    );
    // Nothing beyond the documented calls.
    let reqs = gh.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 5, "{reqs:?}");
}

#[tokio::test]
async fn a_failing_or_slow_github_leaves_the_section_out() {
    let sentry = sentry_api().await;
    let broken = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401"
        })))
        .mount(&broken)
        .await;
    let d = description(&source(&sentry, &broken, Duration::from_secs(5))).await;
    assert!(d.contains("## Stack Trace"), "{d}");
    assert!(!d.contains("Suspected Cause"), "{d}");

    let slow = github(Some(Duration::from_secs(3))).await;
    let started = std::time::Instant::now();
    let d = description(&source(&sentry, &slow, Duration::from_millis(300))).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the budget holds"
    );
    assert!(
        d.contains("## Stack Trace") && !d.contains("Suspected Cause"),
        "{d}"
    );
}

#[tokio::test]
async fn only_deployments_when_no_commit_matches() {
    let sentry = MockServer::start().await;
    // The fixture as is: its only in-app frame is `/runner`, which no commit touches.
    Mock::given(method("GET"))
        .and(path(EVENTS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(EVENTS, "application/json"))
        .mount(&sentry)
        .await;
    let gh = github(None).await;
    let d = description(&source(&sentry, &gh, Duration::from_secs(5))).await;
    assert!(
        d.contains("No commit of the 48 h before the first event changed a file of the stack trace (3 inspected)."),
        "{d}"
    );
    assert!(d.contains("- production: `main`"), "{d}");
}
