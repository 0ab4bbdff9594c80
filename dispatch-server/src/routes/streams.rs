//! Live streams (server-sent events): the board (`GET /api/board/stream`) and one issue's
//! activity and terminal output (`GET /api/issues/{id}/activity/stream`).
//!
//! Events come only from the engine's `EventBus` (small events with ids; the rows are read from
//! the store), so a viewer connected to one replica sees what was posted to another. As in the
//! original, every event is one `data:` line holding a JSON object with its `type`.
//!
//! The issue stream resumes: terminal chunks carry `id: t:<run>:<seq>`, activities
//! `id: a:<activity>`. Because a browser only sends back the *last* id it saw, each id also
//! carries the other cursor when the stream has one (`t:<run>:<seq>;a:<activity>`), so a
//! reconnect after an activity does not lose the terminal position and vice versa. A reconnect
//! with `Last-Event-ID` gets the missed chunks of that run (and every chunk of the issue's later
//! runs) and the activities newer than the last one seen, then live events, without
//! duplicates: the stream subscribes to the bus before it reads the backlog and drops live
//! events the backlog already covered. Terminal chunks are always read from the store by
//! sequence number, so a subscriber that lagged behind the bus fills the gap instead of
//! losing output.
//!
//! Streams end when the server shuts down (`AppState::shutdown`), so graceful shutdown does not
//! wait for viewers to leave.

use super::{IssueKey, issue_ref};
use crate::auth::Authenticated;
use crate::dto::{activity_json, issue_json};
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::openapi::{ApiRouter, doc, get};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use dispatch_core::Dispatch;
use dispatch_core::ids::{ActivityId, IssueId, RunId};
use dispatch_core::ports::{Event, EventStream};
use dispatch_core::run::Activity;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub fn router() -> ApiRouter {
    ApiRouter::new()
        .route(
            "/api/board/stream",
            get(
                board_stream,
                doc("Server-sent board events").media("text/event-stream"),
            ),
        )
        .route(
            "/api/issues/{id}/activity/stream",
            get(
                issue_stream,
                doc("Server-sent events: activities, terminal output, run status; Last-Event-ID replay")
                    .media("text/event-stream"),
            ),
        )
}

/// Terminal chunks read from the store per query.
const TERMINAL_PAGE: usize = 500;
/// Activities read per query, and at most this many pages when looking for a resume point.
const ACTIVITY_PAGE: usize = 200;
const ACTIVITY_PAGES: usize = 5;
/// Activity ids remembered per connection to drop duplicates.
const SENT_ACTIVITIES: usize = 4096;

fn ticker(period: Duration) -> Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn data(v: &Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

/// SSE ids must not contain line breaks or NUL; ours are built from UUIDs and numbers, this
/// only guards against a future change.
fn with_id(e: SseEvent, id: &str) -> SseEvent {
    if id.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
        e
    } else {
        e.id(id)
    }
}

pub(crate) fn sse_response<S>(stream: S, keepalive: Duration) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let mut res = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(keepalive).text("ping"))
        .into_response();
    // Reverse proxies (nginx) must not buffer the stream.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// What one `select!` round produced.
enum Step {
    Stop,
    Beat,
    Bus(Option<Event>),
}

// ---------------------------------------------------------------------------------------------
// Board
// ---------------------------------------------------------------------------------------------

struct BoardStream {
    dispatch: Dispatch,
    shutdown: CancellationToken,
    bus: EventStream,
    out: VecDeque<SseEvent>,
    done: bool,
}

async fn board_stream(State(s): State<AppState>, _a: Authenticated) -> Response {
    let st = BoardStream {
        dispatch: s.dispatch.clone(),
        shutdown: s.shutdown.clone(),
        bus: s.dispatch.bus().subscribe(),
        out: VecDeque::from([data(&json!({ "type": "connected", "timestamp": now() }))]),
        done: false,
    };
    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(e), st));
            }
            if st.done || st.shutdown.is_cancelled() {
                return None;
            }
            let step = tokio::select! {
                biased;
                _ = st.shutdown.cancelled() => Step::Stop,
                ev = st.bus.next() => Step::Bus(ev),
            };
            match step {
                Step::Stop | Step::Bus(None) => st.done = true,
                Step::Beat => {}
                Step::Bus(Some(ev)) => {
                    if let Some(e) = board_event(&st.dispatch, &ev).await {
                        st.out.push_back(e);
                    }
                }
            }
        }
    });
    sse_response(stream, s.config.sse_keepalive)
}

/// The board event for a bus event, or `None` when it is not a board event (or the issue is
/// already gone again).
async fn board_event(d: &Dispatch, ev: &Event) -> Option<SseEvent> {
    let (kind, issue_id, previous) = match ev {
        Event::IssueCreated { issue_id } => ("issue_created", *issue_id, None),
        Event::IssueUpdated { issue_id } => ("issue_updated", *issue_id, None),
        Event::IssueMoved { issue_id, from, .. } => ("issue_moved", *issue_id, Some(*from)),
        Event::IssueDeleted {
            issue_id,
            identifier,
        } => {
            let v = json!({ "type": "issue_deleted", "issueId": issue_id, "identifier": identifier, "timestamp": now() });
            return Some(with_id(data(&v), &format!("b:{issue_id}:deleted")));
        }
        _ => return None,
    };
    let rendered = async {
        let issue = d.get_issue(issue_id).await?;
        let cols = d.columns().await?;
        let labels = d.labels().await?;
        Ok::<_, dispatch_core::Error>((issue_json(&issue, &cols, &labels), issue.version))
    }
    .await;
    let (issue, version) = match rendered {
        Ok(x) => x,
        Err(e) if e.kind == dispatch_core::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(issue = %issue_id, error = %e, "board stream: cannot read the issue");
            return None;
        }
    };
    let mut v = json!({ "type": kind, "issue": issue, "timestamp": now() });
    if let Some(p) = previous {
        v["previousStatusId"] = json!(p);
    }
    Some(with_id(data(&v), &format!("b:{issue_id}:{version}")))
}

// ---------------------------------------------------------------------------------------------
// Issue activity and terminal
// ---------------------------------------------------------------------------------------------

/// Where a client is, from `Last-Event-ID`.
#[derive(Debug, Default, Clone, PartialEq)]
struct Cursor {
    terminal: Option<(RunId, u64)>,
    activity: Option<ActivityId>,
}

impl Cursor {
    /// `t:<run>:<seq>`, `a:<activity>`, or both joined by `;`. Anything else is ignored.
    fn parse(raw: &str) -> Cursor {
        let mut c = Cursor::default();
        if raw.len() > 256 {
            return c;
        }
        for part in raw.split(';').map(str::trim) {
            if let Some(rest) = part.strip_prefix("t:") {
                if let Some((run, seq)) = rest.rsplit_once(':')
                    && let (Ok(run), Ok(seq)) = (run.parse::<RunId>(), seq.parse::<u64>())
                {
                    c.terminal = Some((run, seq));
                }
            } else if let Some(a) = part.strip_prefix("a:")
                && let Ok(a) = a.parse::<ActivityId>()
            {
                c.activity = Some(a);
            }
        }
        c
    }

    fn from_headers(h: &HeaderMap) -> Cursor {
        h.get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(Cursor::parse)
            .unwrap_or_default()
    }
}

/// A bounded set of ids already sent.
#[derive(Default)]
struct Seen {
    order: VecDeque<ActivityId>,
    set: HashSet<ActivityId>,
}

impl Seen {
    fn contains(&self, id: &ActivityId) -> bool {
        self.set.contains(id)
    }
    fn insert(&mut self, id: ActivityId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > SENT_ACTIVITIES
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

struct IssueStream {
    dispatch: Dispatch,
    shutdown: CancellationToken,
    issue_id: IssueId,
    bus: EventStream,
    heartbeat: Interval,
    out: VecDeque<SseEvent>,
    /// Runs whose backlog is still to be sent (oldest first); their cursor is in `sent_seq`.
    backlog_runs: VecDeque<RunId>,
    /// The last terminal chunk sent, per run.
    sent_seq: HashMap<RunId, u64>,
    /// Runs that existed when the stream opened without a known position: their first live
    /// chunk starts them (the client loaded earlier output with the page).
    preexisting: HashSet<RunId>,
    sent_activities: Seen,
    /// The cursors the next event ids carry.
    cursor: Cursor,
    done: bool,
}

async fn issue_stream(
    State(s): State<AppState>,
    _a: Authenticated,
    ApiPath(IssueKey(id)): ApiPath<IssueKey>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let issue = s.dispatch.get_issue(issue_ref(&id)?).await?;
    // Subscribe before reading anything, so nothing published from here on is missed.
    let bus = s.dispatch.bus().subscribe();
    let runs = s.dispatch.runs(issue.id).await?; // newest first
    let resume = Cursor::from_headers(&headers);

    let mut st = IssueStream {
        dispatch: s.dispatch.clone(),
        shutdown: s.shutdown.clone(),
        issue_id: issue.id,
        bus,
        heartbeat: ticker(s.config.sse_keepalive),
        out: VecDeque::new(),
        backlog_runs: VecDeque::new(),
        sent_seq: HashMap::new(),
        preexisting: runs.iter().map(|r| r.id).collect(),
        sent_activities: Seen::default(),
        cursor: Cursor::default(),
        done: false,
    };
    st.out
        .push_back(data(&json!({ "type": "connected", "issueId": issue.id })));

    // Terminal backlog: the rest of the client's run, then every later run from the start. A
    // cursor naming a run of another issue is ignored.
    if let Some((run, seq)) = resume.terminal
        && let Some(pos) = runs.iter().position(|r| r.id == run)
    {
        st.cursor.terminal = Some((run, seq));
        st.sent_seq.insert(run, seq);
        st.backlog_runs.push_back(run);
        for later in runs[..pos].iter().rev() {
            st.sent_seq.insert(later.id, 0);
            st.backlog_runs.push_back(later.id);
        }
    }
    // Activity backlog: everything newer than the last one seen.
    if let Some(last) = resume.activity {
        st.cursor.activity = Some(last);
        st.sent_activities.insert(last);
        match activities_after(&s.dispatch, issue.id, last).await {
            Ok(acts) => {
                for a in &acts {
                    st.push_activity(a);
                }
            }
            Err(e) => {
                tracing::warn!(issue = %issue.identifier, error = %e, "activity stream: cannot read the activity backlog")
            }
        }
    }

    let stream = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(e) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(e), st));
            }
            if st.done || st.shutdown.is_cancelled() {
                return None;
            }
            // The backlog goes out before any live event (those wait in the subscription).
            if let Some(run) = st.backlog_runs.front().copied() {
                match st.send_terminal_page(run).await {
                    Ok(0) => {
                        st.backlog_runs.pop_front();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(run = %run, error = %e, "activity stream: cannot read the terminal backlog");
                        st.backlog_runs.pop_front();
                    }
                }
                continue;
            }
            let step = tokio::select! {
                biased;
                _ = st.shutdown.cancelled() => Step::Stop,
                ev = st.bus.next() => Step::Bus(ev),
                _ = st.heartbeat.tick() => Step::Beat,
            };
            match step {
                Step::Stop | Step::Bus(None) => st.done = true,
                Step::Beat => st
                    .out
                    .push_back(data(&json!({ "type": "heartbeat", "timestamp": now() }))),
                Step::Bus(Some(ev)) if ev.issue_id() == st.issue_id => st.live(ev).await,
                Step::Bus(Some(_)) => {}
            }
        }
    });
    Ok(sse_response(stream, s.config.sse_keepalive))
}

impl IssueStream {
    fn terminal_id(&self, run: RunId, seq: u64) -> String {
        match self.cursor.activity {
            Some(a) => format!("t:{run}:{seq};a:{a}"),
            None => format!("t:{run}:{seq}"),
        }
    }

    fn activity_id(&self, a: ActivityId) -> String {
        match self.cursor.terminal {
            Some((run, seq)) => format!("a:{a};t:{run}:{seq}"),
            None => format!("a:{a}"),
        }
    }

    fn push_activity(&mut self, a: &Activity) {
        if self.sent_activities.contains(&a.id) {
            return;
        }
        self.sent_activities.insert(a.id);
        self.cursor.activity = Some(a.id);
        let v = json!({ "type": "activity", "data": activity_json(a) });
        let id = self.activity_id(a.id);
        self.out.push_back(with_id(data(&v), &id));
    }

    /// Sends the next page of a run's chunks after what was sent; returns how many.
    async fn send_terminal_page(&mut self, run: RunId) -> dispatch_core::Result<usize> {
        let after = self.sent_seq.get(&run).copied().unwrap_or(0);
        let chunks = self
            .dispatch
            .read_terminal(run, after, TERMINAL_PAGE)
            .await?;
        for c in &chunks {
            self.push_chunk(run, c.seq, &c.content, c.at);
        }
        Ok(chunks.len())
    }

    fn push_chunk(&mut self, run: RunId, seq: u64, content: &str, at: dispatch_core::Timestamp) {
        self.sent_seq.insert(run, seq);
        self.cursor.terminal = Some((run, seq));
        let v = json!({
            "type": "terminal_output",
            "data": { "content": content, "timestamp": at, "seq": seq, "runId": run },
        });
        let id = self.terminal_id(run, seq);
        self.out.push_back(with_id(data(&v), &id));
    }

    async fn live(&mut self, ev: Event) {
        match ev {
            Event::TerminalChunk {
                run_id,
                seq,
                content,
                ..
            } => {
                let after = match self.sent_seq.get(&run_id) {
                    Some(n) => *n,
                    None if self.preexisting.contains(&run_id) => seq.saturating_sub(1),
                    None => 0,
                };
                if seq <= after {
                    return; // the backlog or an earlier read already sent it
                }
                // The next chunk, carried by the event: sent without reading the store.
                if seq == after + 1
                    && let Some(c) = content
                {
                    self.push_chunk(run_id, seq, &c.text, c.at);
                    return;
                }
                self.sent_seq.insert(run_id, after);
                // Read up to this chunk (and whatever else is stored): fills gaps left by a
                // lagging subscription.
                loop {
                    match self.send_terminal_page(run_id).await {
                        // A page can be short of TERMINAL_PAGE chunks (its byte budget):
                        // read on until this chunk was sent or nothing more is stored.
                        Ok(n) if n > 0 && self.sent_seq.get(&run_id).is_some_and(|s| *s < seq) => {
                            continue;
                        }
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(run = %run_id, error = %e, "activity stream: cannot read terminal output");
                            break;
                        }
                    }
                }
            }
            Event::Activity { activity_id, .. } => {
                if self.sent_activities.contains(&activity_id) {
                    return;
                }
                match self.new_activities(activity_id).await {
                    Ok(acts) => {
                        for a in &acts {
                            self.push_activity(a);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(activity = %activity_id, error = %e, "activity stream: cannot read the activity")
                    }
                }
            }
            Event::RunChanged { run_id, status, .. } => {
                let v =
                    json!({ "type": "run_status", "data": { "runId": run_id, "status": status } });
                self.out.push_back(data(&v));
            }
            Event::IssueDeleted {
                issue_id,
                identifier,
            } => {
                let v = json!({ "type": "issue_deleted", "issueId": issue_id, "identifier": identifier });
                self.out.push_back(data(&v));
                self.done = true;
            }
            Event::IssueCreated { .. } | Event::IssueUpdated { .. } | Event::IssueMoved { .. } => {}
        }
    }

    /// The activity `wanted` plus any not yet sent that are newer than the last one sent
    /// (activities whose events a lagging subscription lost), oldest first.
    async fn new_activities(&mut self, wanted: ActivityId) -> dispatch_core::Result<Vec<Activity>> {
        let page = self.dispatch.activities(self.issue_id, None, 50).await?; // newest first
        let mut out: Vec<Activity> = Vec::new();
        if let Some(cursor) = self.cursor.activity {
            for a in &page {
                if self.sent_activities.contains(&a.id) || a.id < cursor {
                    break;
                }
                out.push(a.clone());
            }
        }
        if !out.iter().any(|a| a.id == wanted) {
            match page.iter().find(|a| a.id == wanted) {
                Some(a) => out.insert(0, a.clone()),
                None => {
                    if let Some(a) =
                        find_activity(&self.dispatch, self.issue_id, wanted, page.last()).await?
                    {
                        out.insert(0, a);
                    }
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}

/// Looks further back for one activity (rare: only when 50 newer ones arrived meanwhile).
async fn find_activity(
    d: &Dispatch,
    issue: IssueId,
    wanted: ActivityId,
    oldest_seen: Option<&Activity>,
) -> dispatch_core::Result<Option<Activity>> {
    let mut before = oldest_seen.map(|a| a.created_at);
    for _ in 0..ACTIVITY_PAGES {
        let Some(b) = before else { return Ok(None) };
        let page = d.activities(issue, Some(b), ACTIVITY_PAGE).await?;
        if let Some(a) = page.iter().find(|a| a.id == wanted) {
            return Ok(Some(a.clone()));
        }
        if page.len() < ACTIVITY_PAGE {
            return Ok(None);
        }
        before = page.last().map(|a| a.created_at);
    }
    Ok(None)
}

/// Activities of the issue newer than `last`, oldest first. When `last` is not found within
/// the newest `ACTIVITY_PAGE * ACTIVITY_PAGES` (pruned, or not this issue's), ids decide: they
/// are UUID v7, ordered by creation time.
async fn activities_after(
    d: &Dispatch,
    issue: IssueId,
    last: ActivityId,
) -> dispatch_core::Result<Vec<Activity>> {
    let mut newer: Vec<Activity> = Vec::new();
    let mut before = None;
    let mut found = false;
    for _ in 0..ACTIVITY_PAGES {
        let page = d.activities(issue, before, ACTIVITY_PAGE).await?;
        for a in &page {
            if a.id == last {
                found = true;
                break;
            }
            newer.push(a.clone());
        }
        if found || page.len() < ACTIVITY_PAGE {
            break;
        }
        before = page.last().map(|a| a.created_at);
    }
    if !found {
        newer.retain(|a| a.id > last);
    }
    newer.reverse();
    Ok(newer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_alone_and_combined() {
        let run = RunId::new();
        let act = ActivityId::new();
        assert_eq!(
            Cursor::parse(&format!("t:{run}:7")),
            Cursor {
                terminal: Some((run, 7)),
                activity: None
            }
        );
        assert_eq!(
            Cursor::parse(&format!("a:{act}")),
            Cursor {
                terminal: None,
                activity: Some(act)
            }
        );
        let both = Cursor {
            terminal: Some((run, 3)),
            activity: Some(act),
        };
        assert_eq!(Cursor::parse(&format!("t:{run}:3;a:{act}")), both);
        assert_eq!(Cursor::parse(&format!("a:{act};t:{run}:3")), both);
        for junk in [
            "",
            "t:",
            "t:x:1",
            &format!("t:{run}:-1"),
            "a:nope",
            "b:1:2",
            &"t".repeat(300),
        ] {
            assert_eq!(Cursor::parse(junk), Cursor::default(), "{junk}");
        }
    }

    #[test]
    fn seen_is_bounded() {
        let mut s = Seen::default();
        let first = ActivityId::new();
        s.insert(first);
        for _ in 0..SENT_ACTIVITIES {
            s.insert(ActivityId::new());
        }
        assert!(!s.contains(&first));
        assert_eq!(s.set.len(), SENT_ACTIVITIES);
    }
}
