//! What Dispatch says in Slack (spec §12.2), as outbox deliveries: the message text, the
//! channel, and which earlier post a reply is threaded on. Pure: the engine gathers the rows,
//! these functions decide the words.
//!
//! A delivery's payload is `{"channel", "text", "thread"}`: `thread` is `"required"` (a reply
//! that is dropped when its thread was never posted: the internal channel's agent replies),
//! `"optional"` (threaded when the first post exists, top-level otherwise: customer updates) or
//! absent (a top-level post, whose `ts` is kept as the delivery's response). The thread's first
//! post is the delivery named by `after_key`.

use super::{KIND_SLACK, NewDelivery};
use crate::Timestamp;
use crate::ids::IssueId;
use crate::issue::{Comment, Issue, Priority};
use crate::run::{Outcome, Run, RunStatus};
use serde_json::json;

/// How Slack notifications are routed (`SLACK_BOT_TOKEN`, `INTERNAL_SLACK_CHANNEL_ID`,
/// `NOTIFICATIONS_ENABLED`, `MAX_AGENT_COST_PER_RUN`).
#[derive(Debug, Clone, PartialEq)]
pub struct SlackRouting {
    /// The team's channel for new errors and agent runs; `None`: no internal messages.
    pub internal_channel: Option<String>,
    /// The public URL, for "View in Dispatch" and portal links.
    pub app_url: String,
    /// `MAX_AGENT_COST_PER_RUN` (25): a run that cost ≥ 90 % of it gets a budget warning.
    pub max_cost_per_run_usd: f64,
}

/// `NOTIFICATIONS_ENABLED`: notifications are off only for a case-insensitive `false` (spec
/// §13 item 6: unset, "", "true", "1", "yes", "no", "disabled" all leave them on).
pub fn notifications_enabled(value: Option<&str>) -> bool {
    !value.is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

/// Thread modes of a payload.
pub const THREAD_REQUIRED: &str = "required";
pub const THREAD_OPTIONAL: &str = "optional";

/// The key of the internal channel's "new error" post of an issue (its thread).
pub fn internal_thread_key(issue: IssueId) -> String {
    format!("slack:internal:{issue}:new_error")
}

/// The key of the "issue created" post of an issue in a customer channel (its thread there).
pub fn customer_thread_key(issue: IssueId, channel: &str) -> String {
    format!("slack:customer:{issue}:{channel}:created")
}

/// A reply's thread: its mode ([`THREAD_REQUIRED`], [`THREAD_OPTIONAL`]) and the key of the
/// thread's first post.
type Thread = Option<(&'static str, String)>;

fn message(
    channel: &str,
    text: String,
    thread: Thread,
    event: &str,
    key: String,
    issue: &Issue,
    now: Timestamp,
) -> NewDelivery {
    let mut payload = json!({ "channel": channel, "text": text });
    let after = thread.map(|(mode, after)| {
        payload["thread"] = json!(mode);
        after
    });
    NewDelivery {
        kind: KIND_SLACK.into(),
        target: channel.to_string(),
        event: event.to_string(),
        payload,
        idempotency_key: key,
        after_key: after,
        secret: None,
        issue_id: Some(issue.id),
        due_at: now,
    }
}

fn priority_emoji(p: Priority) -> &'static str {
    match p {
        Priority::P1 => ":rotating_light:",
        Priority::P2 => ":warning:",
        Priority::P3 => ":large_blue_circle:",
        Priority::P4 => ":white_circle:",
    }
}

/// The emoji of a status move, by the new column's name (spec §12.2).
pub fn status_emoji(to: &str) -> &'static str {
    let s = to.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if has(&["done", "complete", "deploy"]) {
        "✅"
    } else if has(&["progress", "implement", "working"]) {
        "🛠"
    } else if has(&["review"]) {
        "👀"
    } else if has(&["cancel"]) {
        "❌"
    } else if has(&["block"]) {
        "🛑"
    } else if has(&["triage", "backlog"]) {
        "📥"
    } else if has(&["test"]) {
        "🧪"
    } else {
        "➡"
    }
}

/// `text` cut to `max` characters with `...` when longer.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max).collect();
    s.push_str("...");
    s
}

/// Every line of `text` as a Slack quote.
fn quote(text: &str) -> String {
    text.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Slack's control characters `&`, `<`, `>` escaped (user text cannot forge links or mentions).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn issue_url(r: &SlackRouting, issue: &Issue) -> String {
    format!(
        "{}/issue/{}",
        r.app_url.trim_end_matches('/'),
        issue.identifier
    )
}

/// The internal channel's top-level post for a new error (its `ts` becomes the issue's
/// internal thread): `<emoji> *IDENT*: title`, `Pn | N event(s)`, `<url|View in Dispatch>`.
pub fn new_error(
    r: &SlackRouting,
    issue: &Issue,
    event_count: u64,
    now: Timestamp,
) -> Option<NewDelivery> {
    let channel = r.internal_channel.as_deref()?;
    let events = if event_count == 1 {
        "1 event".to_string()
    } else {
        format!("{event_count} events")
    };
    let text = format!(
        "{} *{}*: {}\n{} | {}\n<{}|View in Dispatch>",
        priority_emoji(issue.priority),
        issue.identifier,
        escape(&issue.title),
        issue.priority,
        events,
        issue_url(r, issue),
    );
    Some(message(
        channel,
        text,
        None,
        "slack.new_error",
        internal_thread_key(issue.id),
        issue,
        now,
    ))
}

/// The thread reply when an agent starts: `:robot_face: Agent started (kind)`.
pub fn agent_started(
    r: &SlackRouting,
    issue: &Issue,
    run: &Run,
    now: Timestamp,
) -> Option<NewDelivery> {
    let channel = r.internal_channel.as_deref()?;
    let text = format!(":robot_face: Agent started ({})", run.kind);
    Some(message(
        channel,
        text,
        Some((THREAD_REQUIRED, internal_thread_key(issue.id))),
        "slack.agent_started",
        format!("slack:internal:{}:run:{}:started", issue.id, run.id),
        issue,
        now,
    ))
}

/// The thread reply when a run ends: ✅ complete or ❌ failed, the outcome summary quoted, the
/// PR, and `Cost: $x.xx` (with a budget warning at ≥ 90 % of the per-run cap; no cost line for
/// a run that cost nothing).
pub fn agent_finished(
    r: &SlackRouting,
    issue: &Issue,
    run: &Run,
    pr_url: Option<&str>,
    now: Timestamp,
) -> Option<NewDelivery> {
    let channel = r.internal_channel.as_deref()?;
    let failed = matches!(
        run.status,
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::TimedOut
    ) || run.outcome == Some(Outcome::Failed);
    let what = run_noun(run);
    let mut lines = vec![if failed {
        format!(":x: {what} failed")
    } else {
        format!(":white_check_mark: {what} complete")
    }];
    if let Some(s) = run
        .outcome_summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        lines.push(quote(&escape(&cut(s.trim(), 500))));
    }
    if let Some(pr) = pr_url.filter(|_| !failed) {
        lines.push(format!("PR: {pr}"));
    }
    let cost = run.cost_usd;
    if cost.is_finite() && cost > 0.0 {
        let mut line = format!("Cost: ${cost:.2}");
        if r.max_cost_per_run_usd > 0.0 && cost >= 0.9 * r.max_cost_per_run_usd {
            line.push_str(" :warning: hit budget limit");
        }
        lines.push(line);
    }
    Some(message(
        channel,
        lines.join("\n"),
        Some((THREAD_REQUIRED, internal_thread_key(issue.id))),
        "slack.agent_finished",
        format!("slack:internal:{}:run:{}:finished", issue.id, run.id),
        issue,
        now,
    ))
}

/// Whether a run's cost went from below to at least 90 % of the per-run cap (once per run).
pub fn budget_crossed(before_usd: f64, after_usd: f64, cap_usd: f64) -> bool {
    let line = 0.9 * cap_usd;
    cap_usd > 0.0 && after_usd.is_finite() && after_usd >= line && before_usd < line
}

/// The thread reply when a running agent's cost reaches 90 % of the per-run cap.
pub fn budget_warning(
    r: &SlackRouting,
    issue: &Issue,
    run: &Run,
    now: Timestamp,
) -> Option<NewDelivery> {
    let channel = r.internal_channel.as_deref()?;
    let text = format!(
        ":warning: Agent has spent ${:.2} of its ${:.2} budget for this run ({})",
        run.cost_usd, r.max_cost_per_run_usd, run.kind
    );
    Some(message(
        channel,
        text,
        Some((THREAD_REQUIRED, internal_thread_key(issue.id))),
        "slack.budget_warning",
        format!("slack:internal:{}:run:{}:budget", issue.id, run.id),
        issue,
        now,
    ))
}

fn run_noun(run: &Run) -> &'static str {
    use crate::run::WorkflowKind as K;
    match run.kind {
        K::ErrorFix | K::PrdInvestigate => "Investigation",
        K::PrdImplement => "Implementation",
        K::Qa => "QA",
        K::DeepResearch => "Research",
        K::AutoTriage => "Triage",
    }
}

/// A customer channel with where its issue links go.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerChannel {
    pub channel: String,
    /// The customer's portal link for this issue.
    pub portal_url: String,
}

/// "Issue created" in a customer's channel: top-level, its `ts` becomes the issue's thread
/// there. Priority emoji, status, reporter, description (≤ 200 characters) quoted, portal link.
pub fn issue_created(
    c: &CustomerChannel,
    issue: &Issue,
    status: &str,
    reporter: Option<&str>,
    now: Timestamp,
) -> NewDelivery {
    let mut lines = vec![format!(
        "{} *{}*: {}",
        priority_emoji(issue.priority),
        issue.identifier,
        escape(&issue.title)
    )];
    let mut meta = format!("Priority: {} | Status: {}", issue.priority, escape(status));
    if let Some(r) = reporter.filter(|r| !r.trim().is_empty()) {
        meta.push_str(&format!(" | Reported by {}", escape(r.trim())));
    }
    lines.push(meta);
    if let Some(d) = issue
        .description
        .as_deref()
        .filter(|d| !d.trim().is_empty())
    {
        lines.push(quote(&escape(&cut(d.trim(), 200))));
    }
    lines.push(format!("<{}|View in Portal>", c.portal_url));
    message(
        &c.channel,
        lines.join("\n"),
        None,
        "slack.issue_created",
        customer_thread_key(issue.id, &c.channel),
        issue,
        now,
    )
}

/// A status move in a watching customer's channel: `<emoji> *IDENT* moved from _Old_ to *New*`,
/// the title quoted, the portal link; threaded on the issue's post there when it exists.
/// `change` makes the key unique per move (the history entry's or the update's id).
pub fn status_changed(
    c: &CustomerChannel,
    issue: &Issue,
    from: &str,
    to: &str,
    change: &str,
    now: Timestamp,
) -> NewDelivery {
    let text = format!(
        "{} *{}* moved from _{}_ to *{}*\n{}\n<{}|View in Portal>",
        status_emoji(to),
        issue.identifier,
        escape(from),
        escape(to),
        quote(&escape(&issue.title)),
        c.portal_url
    );
    message(
        &c.channel,
        text,
        Some((THREAD_OPTIONAL, customer_thread_key(issue.id, &c.channel))),
        "slack.status_changed",
        format!("slack:customer:{}:{}:status:{change}", issue.id, c.channel),
        issue,
        now,
    )
}

/// A comment in the issue's customer channel, threaded on the issue's post; the body (≤ 500
/// characters) quoted.
pub fn comment_added(
    c: &CustomerChannel,
    issue: &Issue,
    comment: &Comment,
    now: Timestamp,
) -> NewDelivery {
    let who = comment
        .author
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("Someone");
    let text = format!(
        ":speech_balloon: *{}* {} commented on *{}*\n{}\n<{}|View in Portal>",
        issue.identifier,
        escape(who),
        escape(&issue.title),
        quote(&escape(&cut(comment.body.trim(), 500))),
        c.portal_url
    );
    message(
        &c.channel,
        text,
        Some((THREAD_OPTIONAL, customer_thread_key(issue.id, &c.channel))),
        "slack.comment_added",
        format!(
            "slack:customer:{}:{}:comment:{}",
            issue.id, c.channel, comment.id
        ),
        issue,
        now,
    )
}

/// An existing thread (a report made in a Slack thread) recorded as the issue's thread in
/// `channel`: a delivery under the key of the issue's "issue created" post there, which the
/// transport settles as delivered with `ts` without posting anything ([`recorded_ts`]).
pub fn recorded_thread(
    issue: &Issue,
    channel: &str,
    ts: &str,
    now: Timestamp,
) -> crate::error::Result<NewDelivery> {
    let ts = ts.trim();
    let valid =
        !ts.is_empty() && ts.len() <= 32 && ts.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !valid {
        return Err(crate::error::Error::invalid(
            "slackThreadTs",
            "a Slack thread ts is digits and a dot, like 1700000000.000100",
        ));
    }
    let mut d = message(
        channel,
        String::new(),
        None,
        "slack.thread",
        customer_thread_key(issue.id, channel),
        issue,
        now,
    );
    d.payload["recorded_ts"] = json!(ts);
    Ok(d)
}

/// The thread a [`recorded_thread`] delivery stands for: the transport answers it as delivered
/// with this `ts` and sends nothing.
pub fn recorded_ts(payload: &serde_json::Value) -> Option<&str> {
    payload.get("recorded_ts").and_then(|t| t.as_str())
}

/// The `thread_ts` a message is posted with, given the thread's first post (the delivery named
/// by `after_key`): `Ok(Some(ts))` to reply in the thread, `Ok(None)` for a top-level post,
/// `Err(reason)` when the message is to be dropped (a required thread that was never posted,
/// as the original "skips silently without thread ts").
pub fn thread_ts(
    payload: &serde_json::Value,
    parent: Option<&super::Delivery>,
) -> std::result::Result<Option<String>, String> {
    let ts = parent
        .filter(|p| p.state == super::DeliveryState::Delivered)
        .and_then(|p| p.response.clone())
        .filter(|t| !t.is_empty());
    match payload.get("thread").and_then(|t| t.as_str()) {
        Some(THREAD_REQUIRED) => ts.map(Some).ok_or_else(|| {
            "no thread to reply in (its first message was never posted)".to_string()
        }),
        Some(THREAD_OPTIONAL) => Ok(ts),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ColumnId, WorkspaceId};
    use crate::issue::NewIssue;
    use crate::run::{NewRun, WorkflowKind};
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
            .single()
            .expect("time")
    }

    fn routing() -> SlackRouting {
        SlackRouting {
            internal_channel: Some("C0INTERNAL".into()),
            app_url: "https://dispatch.example.com/".into(),
            max_cost_per_run_usd: 25.0,
        }
    }

    fn issue(priority: Priority) -> Issue {
        let mut n = NewIssue::titled("[copilot/server-tools] Tool call failed <script>");
        n.priority = priority;
        n.description = Some("x".repeat(300));
        n.into_issue(
            WorkspaceId::new(),
            7,
            "ACME-7".into(),
            ColumnId::new(),
            t0(),
        )
    }

    fn run(status: RunStatus, outcome: Option<Outcome>, cost: f64) -> Run {
        let i = issue(Priority::P2);
        let mut r = NewRun {
            issue_id: i.id,
            kind: WorkflowKind::ErrorFix,
            additional_context: None,
            force: false,
            requested_by: "test".into(),
        }
        .into_run(t0());
        r.status = status;
        r.outcome = outcome;
        r.cost_usd = cost;
        r.outcome_summary = Some("Fixed the null check".into());
        r
    }

    fn text(d: &NewDelivery) -> String {
        d.payload["text"].as_str().expect("text").to_string()
    }

    #[test]
    fn toggle_is_off_only_for_false() {
        for on in [
            None,
            Some(""),
            Some("true"),
            Some("TRUE"),
            Some("1"),
            Some("yes"),
            Some("no"),
            Some("disabled"),
        ] {
            assert!(notifications_enabled(on), "{on:?}");
        }
        for off in ["false", "FALSE", "False", " false "] {
            assert!(!notifications_enabled(Some(off)), "{off:?}");
        }
    }

    #[test]
    fn new_error_is_a_top_level_post_with_the_shape_of_the_original() {
        let i = issue(Priority::P1);
        let d = new_error(&routing(), &i, 15, t0()).expect("internal channel set");
        let t = text(&d);
        assert!(
            t.starts_with(
                ":rotating_light: *ACME-7*: [copilot/server-tools] Tool call failed &lt;script&gt;"
            ),
            "{t}"
        );
        assert!(t.contains("P1 | 15 events"), "{t}");
        assert!(
            t.contains("<https://dispatch.example.com/issue/ACME-7|View in Dispatch>"),
            "{t}"
        );
        assert_eq!(d.payload.get("thread"), None, "top-level");
        assert_eq!(d.after_key, None);
        assert_eq!(d.idempotency_key, internal_thread_key(i.id));
        assert_eq!(d.target, "C0INTERNAL");
        let one = new_error(&routing(), &issue(Priority::P3), 1, t0()).expect("set");
        assert!(text(&one).contains("P3 | 1 event\n"), "{}", text(&one));
        let mut off = routing();
        off.internal_channel = None;
        assert!(new_error(&off, &i, 1, t0()).is_none());
    }

    #[test]
    fn agent_replies_are_threaded_on_the_new_error_post() {
        let i = issue(Priority::P2);
        let r = run(RunStatus::Running, None, 0.0);
        let s = agent_started(&routing(), &i, &r, t0()).expect("set");
        assert_eq!(text(&s), ":robot_face: Agent started (error_fix)");
        assert_eq!(s.payload["thread"], THREAD_REQUIRED);
        assert_eq!(
            s.after_key.as_deref(),
            Some(internal_thread_key(i.id).as_str())
        );

        let done = run(RunStatus::Completed, Some(Outcome::Completed), 0.42);
        let d = agent_finished(
            &routing(),
            &i,
            &done,
            Some("https://github.com/o/r/pull/9"),
            t0(),
        )
        .expect("set");
        let t = text(&d);
        assert!(
            t.starts_with(":white_check_mark: Investigation complete"),
            "{t}"
        );
        assert!(t.contains("> Fixed the null check"), "{t}");
        assert!(t.contains("PR: https://github.com/o/r/pull/9"), "{t}");
        assert!(t.contains("Cost: $0.42"), "{t}");
        assert!(!t.contains("budget"), "{t}");
        assert_ne!(d.idempotency_key, s.idempotency_key);

        let failed = run(RunStatus::Failed, Some(Outcome::Failed), 0.0);
        let t = text(
            &agent_finished(&routing(), &i, &failed, Some("https://x/pull/1"), t0()).expect("set"),
        );
        assert!(t.starts_with(":x: Investigation failed"), "{t}");
        assert!(!t.contains("PR:"), "{t}");
        assert!(!t.contains("Cost:"), "no cost line for 0: {t}");

        let costly = run(RunStatus::Completed, Some(Outcome::Completed), 22.5);
        let t = text(&agent_finished(&routing(), &i, &costly, None, t0()).expect("set"));
        assert!(t.contains("Cost: $22.50 :warning: hit budget limit"), "{t}");
        assert!(!t.contains("PR:"), "{t}");
    }

    #[test]
    fn a_recorded_thread_takes_the_created_posts_key() {
        let i = issue(Priority::P3);
        let d = recorded_thread(&i, "C0CUST", "1699999999.000100", t0()).expect("valid");
        assert_eq!(d.idempotency_key, customer_thread_key(i.id, "C0CUST"));
        assert_eq!(recorded_ts(&d.payload), Some("1699999999.000100"));
        for bad in ["", "abc", "1699999999.000100; DROP", &"1".repeat(40)] {
            assert!(recorded_thread(&i, "C0CUST", bad, t0()).is_err(), "{bad:?}");
        }
        let c = CustomerChannel {
            channel: "C0CUST".into(),
            portal_url: "https://x".into(),
        };
        assert_eq!(
            recorded_ts(&issue_created(&c, &i, "Backlog", None, t0()).payload),
            None
        );
    }

    #[test]
    fn thread_choice() {
        let mut root = crate::outbox::NewDelivery {
            kind: KIND_SLACK.into(),
            target: "C".into(),
            event: "e".into(),
            payload: json!({}),
            idempotency_key: "k".into(),
            after_key: None,
            secret: None,
            issue_id: None,
            due_at: t0(),
        }
        .into_delivery(t0());
        let required = json!({"thread": THREAD_REQUIRED});
        let optional = json!({"thread": THREAD_OPTIONAL});
        assert!(thread_ts(&required, None).is_err(), "no thread: dropped");
        assert_eq!(thread_ts(&optional, None), Ok(None), "no thread: top-level");
        assert!(
            thread_ts(&required, Some(&root)).is_err(),
            "root still pending"
        );
        root.state = crate::outbox::DeliveryState::Delivered;
        root.response = Some("1.2".into());
        assert_eq!(thread_ts(&required, Some(&root)), Ok(Some("1.2".into())));
        assert_eq!(thread_ts(&optional, Some(&root)), Ok(Some("1.2".into())));
        assert_eq!(
            thread_ts(&json!({}), Some(&root)),
            Ok(None),
            "a top-level post"
        );
        root.state = crate::outbox::DeliveryState::Failed;
        assert_eq!(thread_ts(&optional, Some(&root)), Ok(None));
    }

    #[test]
    fn the_budget_warning_comes_once_at_ninety_percent() {
        assert!(budget_crossed(0.0, 22.5, 25.0));
        assert!(budget_crossed(22.49, 30.0, 25.0));
        assert!(!budget_crossed(22.5, 24.0, 25.0), "already past the line");
        assert!(!budget_crossed(10.0, 22.49, 25.0));
        assert!(!budget_crossed(0.0, 100.0, 0.0), "no cap");
        assert!(!budget_crossed(0.0, f64::NAN, 25.0));
        let i = issue(Priority::P2);
        let r = run(RunStatus::Running, None, 22.5);
        let d = budget_warning(&routing(), &i, &r, t0()).expect("internal channel");
        assert_eq!(
            text(&d),
            ":warning: Agent has spent $22.50 of its $25.00 budget for this run (error_fix)"
        );
        assert_eq!(d.payload["thread"], THREAD_REQUIRED);
        assert_eq!(d.after_key, Some(internal_thread_key(i.id)));
    }

    #[test]
    fn customer_messages() {
        let i = issue(Priority::P2);
        let c = CustomerChannel {
            channel: "C0CUST".into(),
            portal_url: "https://d.example.com/portal/acme?token=t".into(),
        };
        let created = issue_created(&c, &i, "Backlog", Some("Ada"), t0());
        let t = text(&created);
        assert!(t.starts_with(":warning: *ACME-7*:"), "{t}");
        assert!(
            t.contains("Priority: P2 | Status: Backlog | Reported by Ada"),
            "{t}"
        );
        assert!(t.contains(&format!("> {}...", "x".repeat(200))), "{t}");
        assert!(
            t.ends_with("<https://d.example.com/portal/acme?token=t|View in Portal>"),
            "{t}"
        );
        assert_eq!(created.payload.get("thread"), None);

        let moved = status_changed(&c, &i, "Backlog", "In Progress", "h1", t0());
        let t = text(&moved);
        assert!(
            t.starts_with("🛠 *ACME-7* moved from _Backlog_ to *In Progress*"),
            "{t}"
        );
        assert_eq!(moved.payload["thread"], THREAD_OPTIONAL);
        assert_eq!(
            moved.after_key.as_deref(),
            Some(created.idempotency_key.as_str())
        );

        assert_eq!(status_emoji("Done"), "✅");
        assert_eq!(status_emoji("In Review"), "👀");
        assert_eq!(status_emoji("Canceled"), "❌");
        assert_eq!(status_emoji("Blocked"), "🛑");
        assert_eq!(status_emoji("Backlog"), "📥");
        assert_eq!(status_emoji("Testing"), "🧪");
        assert_eq!(status_emoji("Investigating"), "➡");
    }
}
