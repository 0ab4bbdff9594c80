//! The outbox: notifications (Slack) and outbound webhooks are first a stored delivery, then
//! sent by the delivery worker ([`crate::Dispatch::deliver_step`]) through a
//! [`crate::ports::DeliveryTransport`] (DESIGN §3 rule 2, "intent before effect").
//!
//! The request that caused a notification only inserts a row; it never waits for Slack or a
//! webhook receiver and never fails because of them. A delivery stays in the store until it is
//! delivered, skipped or given up, so a restart delivers what the last process left. Each try is
//! claimed with a lease and a fencing token ([`Delivery::lease_token`]); the outcome is written
//! only if the token still matches, so a delivery whose lease expired mid-send and was claimed
//! again is settled once.
//!
//! Rules here are pure: [`retry_delay`] (exponential backoff with jitter, honouring a
//! `Retry-After`) and [`settle`] (what a try's [`Attempt`] does to the row).

pub mod events;
pub mod slack;

use crate::Timestamp;
use crate::error::{Error, Result};
use crate::ids::{DeliveryId, IssueId};
use crate::issue::Issue;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Delivery kinds the server knows (a transport is registered per kind).
pub const KIND_SLACK: &str = "slack";
pub const KIND_WEBHOOK: &str = "webhook";

text_enum!(
    /// Where a delivery is in its life.
    DeliveryState {
        /// Waiting for its first or next try.
        Pending = "pending",
        /// The receiver accepted it.
        Delivered = "delivered",
        /// Nothing to send after all (e.g. a thread reply whose thread was never posted).
        Skipped = "skipped",
        /// Refused for good, or still failing after the last allowed try.
        Failed = "failed",
    }
);

impl DeliveryState {
    /// No try will follow.
    pub fn is_settled(self) -> bool {
        !matches!(self, DeliveryState::Pending)
    }
}

/// Whether a stored delivery may be deleted by the retention: settled (delivered, skipped or
/// failed for good) and its last try was due before `before`. A delivery that a pending one still
/// waits on (its `after_key`, a Slack thread's first post) is kept as well (`parent_of_pending`).
pub fn prunable(d: &Delivery, before: Timestamp, parent_of_pending: bool) -> bool {
    d.state.is_settled() && d.due_at < before && !parent_of_pending
}

/// The outbox rows a change enqueues in the change's own transaction: rendered from what the
/// change leaves (`T`: the issue for issue changes, the comment, the spawn reservation, the run
/// update), by the core's pure renderers from what they need, read before the change; stored
/// with the change or, when the change fails, not at all (issue 10: a crash between the commit
/// and a separate enqueue lost the notification). A key already stored is left as it is, as
/// [`crate::ports::OutboxStore::enqueue_delivery`] does, and so is a row whose key an earlier
/// row of the same plan took; a rendered row that does not validate fails the whole change.
pub struct OutboxPlan<T: ?Sized = Issue>(Option<Arc<RenderFn<T>>>);

type RenderFn<T> = dyn Fn(&T) -> Vec<NewDelivery> + Send + Sync;

impl<T: ?Sized> OutboxPlan<T> {
    pub fn new(render: impl Fn(&T) -> Vec<NewDelivery> + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(render)))
    }

    /// Whether the plan renders anything at all (a plan made by `default()` does not).
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The rows for what the change left, each validated.
    pub fn render(&self, changed: &T) -> Result<Vec<NewDelivery>> {
        let rows = self.0.as_ref().map(|f| f(changed)).unwrap_or_default();
        for d in &rows {
            d.validate()?;
        }
        Ok(rows)
    }
}

impl<T: ?Sized> Default for OutboxPlan<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: ?Sized> Clone for OutboxPlan<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> std::fmt::Debug for OutboxPlan<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OutboxPlan(..)"
        } else {
            "OutboxPlan(none)"
        })
    }
}

/// Two plans are equal when they are the same renderer (or both render nothing).
impl<T: ?Sized> PartialEq for OutboxPlan<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// What a caller hands to the outbox.
#[derive(Clone, PartialEq)]
pub struct NewDelivery {
    /// [`KIND_SLACK`], [`KIND_WEBHOOK`], ...: which transport sends it.
    pub kind: String,
    /// The Slack channel, or the webhook URL.
    pub target: String,
    /// What happened (`ISSUE_CREATED`, `slack.new_error`, ...).
    pub event: String,
    /// What the transport sends (for Slack the message, for a webhook the JSON body).
    pub payload: serde_json::Value,
    /// Unique per delivery: enqueueing the same key again returns the stored row unchanged, so
    /// a retried request does not notify twice.
    pub idempotency_key: String,
    /// The key of a delivery that must settle before this one is tried (a thread reply waits
    /// for its thread's first post); the transport gets that delivery's stored response (a
    /// Slack `ts`). A key that names no delivery does not hold anything up.
    pub after_key: Option<String>,
    /// The webhook signing secret. Stored with the row (like agents' secrets), never shown by
    /// the API.
    pub secret: Option<String>,
    pub issue_id: Option<IssueId>,
    /// The first try is not before this.
    pub due_at: Timestamp,
}

impl std::fmt::Debug for NewDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDelivery")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("event", &self.event)
            .field("idempotency_key", &self.idempotency_key)
            .field("after_key", &self.after_key)
            .finish_non_exhaustive()
    }
}

impl NewDelivery {
    pub fn validate(&self) -> Result<()> {
        if self.kind.trim().is_empty() || self.kind.len() > 32 {
            return Err(Error::invalid(
                "kind",
                "a delivery kind is 1 to 32 characters",
            ));
        }
        if self.target.trim().is_empty() || self.target.len() > 2048 {
            return Err(Error::invalid(
                "target",
                "a delivery target is 1 to 2048 characters",
            ));
        }
        if self.idempotency_key.trim().is_empty() || self.idempotency_key.len() > 512 {
            return Err(Error::invalid(
                "idempotency_key",
                "an idempotency key is 1 to 512 characters",
            ));
        }
        Ok(())
    }

    /// The stored row of a new delivery.
    pub fn into_delivery(self, now: Timestamp) -> Delivery {
        Delivery {
            id: DeliveryId::new(),
            kind: self.kind,
            target: self.target,
            event: self.event,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            after_key: self.after_key,
            secret: self.secret,
            issue_id: self.issue_id,
            state: DeliveryState::Pending,
            attempts: 0,
            due_at: self.due_at,
            lease_until: None,
            lease_token: None,
            last_error: None,
            response_code: None,
            response: None,
            created_at: now,
            settled_at: None,
        }
    }
}

/// One stored delivery.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub kind: String,
    pub target: String,
    pub event: String,
    pub payload: serde_json::Value,
    pub idempotency_key: String,
    pub after_key: Option<String>,
    pub secret: Option<String>,
    pub issue_id: Option<IssueId>,
    pub state: DeliveryState,
    /// Tries so far (a claim counts as a try).
    pub attempts: u32,
    /// The next try is not before this.
    pub due_at: Timestamp,
    /// Claimed by a worker until then.
    pub lease_until: Option<Timestamp>,
    /// The fencing token of the current claim; a settlement must carry it.
    pub lease_token: Option<Uuid>,
    pub last_error: Option<String>,
    /// The receiver's HTTP status of the last try, when it answered.
    pub response_code: Option<u16>,
    /// What the receiver answered, as much as is worth keeping (a Slack message's `ts`).
    pub response: Option<String>,
    pub created_at: Timestamp,
    pub settled_at: Option<Timestamp>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("event", &self.event)
            .field("idempotency_key", &self.idempotency_key)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .field("due_at", &self.due_at)
            .field("last_error", &self.last_error)
            .field("response_code", &self.response_code)
            .field("response", &self.response)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Claims the delivery for one try (the store calls this on each row it hands out).
    pub fn claim(&mut self, now: Timestamp, lease: Duration) {
        self.attempts = self.attempts.saturating_add(1);
        self.lease_until = Some(now + lease);
        self.lease_token = Some(Uuid::now_v7());
    }

    /// Whether a claim at `now` may take it (pending, due, not leased to a live claim).
    pub fn claimable(&self, now: Timestamp) -> bool {
        self.state == DeliveryState::Pending
            && self.due_at <= now
            && self.lease_until.is_none_or(|l| l <= now)
    }
}

/// Which deliveries to list (newest first).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryFilter {
    pub kind: Option<String>,
    pub state: Option<DeliveryState>,
    pub issue_id: Option<IssueId>,
    pub event: Option<String>,
    /// At most this many (1..=500; 0 means 100).
    pub limit: usize,
}

impl DeliveryFilter {
    pub fn limit(&self) -> usize {
        match self.limit {
            0 => 100,
            n => n.min(500),
        }
    }
    pub fn matches(&self, d: &Delivery) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == d.kind)
            && self.state.is_none_or(|s| s == d.state)
            && self.issue_id.is_none_or(|i| d.issue_id == Some(i))
            && self.event.as_ref().is_none_or(|e| *e == d.event)
    }
}

/// What one try came to, as the transport saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// Accepted; `response` is kept (a Slack `ts`, a short body).
    Delivered {
        code: Option<u16>,
        response: Option<String>,
    },
    /// Worth trying again (timeout, 5xx, 429); `retry_after` is the receiver's own wish.
    Retry {
        code: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Refused for good (a 4xx, an unknown channel, a bad token).
    Failed { code: Option<u16>, error: String },
    /// Nothing to send.
    Skipped { reason: String },
}

/// How deliveries are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait after the first failed try; doubled per try.
    pub base: Duration,
    /// No computed wait is longer (a `Retry-After` is honoured up to `max_retry_after`).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Tries before a delivery is given up.
    pub max_attempts: u32,
    /// How long a claim holds a delivery (longer than a transport's timeout).
    pub lease: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::seconds(5),
            max_delay: Duration::hours(1),
            max_retry_after: Duration::hours(1),
            max_attempts: 10,
            lease: Duration::seconds(60),
        }
    }
}

/// The wait before the next try after `attempts` tries, `None` when no try is left.
///
/// Exponential (`base · 2^(attempts-1)`, capped at `max_delay`) with "equal jitter": the wait is
/// between half and all of that, placed by `jitter` in `[0, 1)`, so that deliveries that failed
/// together do not all come back together. A receiver's `Retry-After` is a lower bound (capped
/// at `max_retry_after`).
pub fn retry_delay(
    policy: &RetryPolicy,
    attempts: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    if attempts >= policy.max_attempts {
        return None;
    }
    let base_ms = policy.base.num_milliseconds().max(1);
    let cap_ms = policy.max_delay.num_milliseconds().max(base_ms);
    let exp = attempts.saturating_sub(1).min(30);
    let full = base_ms.saturating_mul(1i64 << exp).min(cap_ms);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = full / 2;
    let backoff = half + ((full - half) as f64 * jitter) as i64;
    let wish = retry_after
        .map(|r| {
            r.num_milliseconds()
                .clamp(0, policy.max_retry_after.num_milliseconds())
        })
        .unwrap_or(0);
    Some(Duration::milliseconds(backoff.max(wish)))
}

/// Applies one try's outcome to the claimed delivery: delivered, skipped or failed for good
/// settle it; a retry sets the next due time by [`retry_delay`] or, with no try left, fails it
/// ("gave up after N attempts"). The lease is released either way.
pub fn settle(
    d: &mut Delivery,
    attempt: Attempt,
    policy: &RetryPolicy,
    now: Timestamp,
    jitter: f64,
) {
    d.lease_until = None;
    d.lease_token = None;
    match attempt {
        Attempt::Delivered { code, response } => {
            d.state = DeliveryState::Delivered;
            d.response_code = code;
            d.response = response.map(|r| clip(&r, 2000));
            d.settled_at = Some(now);
        }
        Attempt::Skipped { reason } => {
            d.state = DeliveryState::Skipped;
            d.last_error = Some(clip(&reason, 2000));
            d.settled_at = Some(now);
        }
        Attempt::Failed { code, error } => {
            d.state = DeliveryState::Failed;
            d.response_code = code;
            d.last_error = Some(clip(&error, 2000));
            d.settled_at = Some(now);
        }
        Attempt::Retry {
            code,
            error,
            retry_after,
        } => {
            d.response_code = code;
            match retry_delay(policy, d.attempts, retry_after, jitter) {
                Some(wait) => {
                    d.last_error = Some(clip(&error, 2000));
                    d.due_at = now + wait;
                }
                None => {
                    d.state = DeliveryState::Failed;
                    d.last_error = Some(clip(
                        &format!("gave up after {} attempts: {error}", d.attempts),
                        2000,
                    ));
                    d.settled_at = Some(now);
                }
            }
        }
    }
}

/// A `Retry-After` header: delay-seconds, or an HTTP date (relative to `now`; a past date is 0).
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::seconds(
            i64::try_from(secs).unwrap_or(i64::MAX).min(86_400 * 365),
        ));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).max(Duration::zero()))
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 1, 15, 9, 0, 0)
            .single()
            .expect("time")
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::seconds(10),
            max_delay: Duration::seconds(300),
            max_retry_after: Duration::seconds(600),
            max_attempts: 5,
            lease: Duration::seconds(60),
        }
    }

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        let p = policy();
        // jitter 0: half of the exponential step; jitter ~1: all of it.
        assert_eq!(retry_delay(&p, 1, None, 0.0), Some(Duration::seconds(5)));
        assert_eq!(retry_delay(&p, 1, None, 1.0), Some(Duration::seconds(10)));
        assert_eq!(retry_delay(&p, 2, None, 0.0), Some(Duration::seconds(10)));
        assert_eq!(retry_delay(&p, 3, None, 0.5), Some(Duration::seconds(30)));
        // 10 · 2^3 = 80 s, 2^4 = 160 s, then the 300 s cap.
        assert_eq!(retry_delay(&p, 4, None, 1.0), Some(Duration::seconds(80)));
        let mut q = p.clone();
        q.max_attempts = 40;
        assert_eq!(retry_delay(&q, 30, None, 1.0), Some(Duration::seconds(300)));
        assert_eq!(retry_delay(&q, 30, None, 0.0), Some(Duration::seconds(150)));
        // Out-of-range jitter is clamped, NaN counts as 0.
        assert_eq!(retry_delay(&p, 1, None, 7.0), Some(Duration::seconds(10)));
        assert_eq!(
            retry_delay(&p, 1, None, f64::NAN),
            Some(Duration::seconds(5))
        );
    }

    #[test]
    fn retry_after_is_a_lower_bound_up_to_its_cap() {
        let p = policy();
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::seconds(42)), 0.0),
            Some(Duration::seconds(42))
        );
        // A shorter wish than the backoff: the backoff wins.
        assert_eq!(
            retry_delay(&p, 3, Some(Duration::seconds(1)), 0.0),
            Some(Duration::seconds(20))
        );
        // An absurd wish is capped.
        assert_eq!(
            retry_delay(&p, 1, Some(Duration::days(3)), 0.0),
            Some(Duration::seconds(600))
        );
    }

    #[test]
    fn no_try_is_left_after_max_attempts() {
        let p = policy();
        assert!(retry_delay(&p, 4, None, 0.0).is_some());
        assert_eq!(retry_delay(&p, 5, None, 0.0), None);
        assert_eq!(retry_delay(&p, 9, Some(Duration::seconds(1)), 0.0), None);
    }

    fn claimed() -> Delivery {
        let mut d = NewDelivery {
            kind: KIND_WEBHOOK.into(),
            target: "https://hooks.example.com/x".into(),
            event: "ISSUE_CREATED".into(),
            payload: serde_json::json!({"a": 1}),
            idempotency_key: "k".into(),
            after_key: None,
            secret: Some("s".into()),
            issue_id: None,
            due_at: t0(),
        }
        .into_delivery(t0());
        d.claim(t0(), Duration::seconds(60));
        d
    }

    #[test]
    fn settle_moves_the_row_and_releases_the_lease() {
        let p = policy();
        let mut d = claimed();
        assert_eq!(d.attempts, 1);
        assert!(d.lease_token.is_some());
        assert!(!d.claimable(t0()), "leased");
        settle(
            &mut d,
            Attempt::Retry {
                code: Some(429),
                error: "HTTP 429".into(),
                retry_after: Some(Duration::seconds(30)),
            },
            &p,
            t0(),
            0.0,
        );
        assert_eq!(d.state, DeliveryState::Pending);
        assert_eq!(d.due_at, t0() + Duration::seconds(30));
        assert_eq!(d.lease_token, None);
        assert_eq!(d.response_code, Some(429));
        assert!(!d.claimable(t0() + Duration::seconds(29)));
        assert!(d.claimable(t0() + Duration::seconds(30)));

        d.claim(t0() + Duration::seconds(30), Duration::seconds(60));
        settle(
            &mut d,
            Attempt::Delivered {
                code: Some(200),
                response: Some("1700000000.000100".into()),
            },
            &p,
            t0() + Duration::seconds(31),
            0.0,
        );
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!(d.attempts, 2);
        assert_eq!(d.response.as_deref(), Some("1700000000.000100"));
        assert_eq!(d.settled_at, Some(t0() + Duration::seconds(31)));
        assert!(
            !d.claimable(t0() + Duration::days(1)),
            "settled rows are never claimed"
        );
    }

    #[test]
    fn the_last_retry_gives_up() {
        let p = policy();
        let mut d = claimed();
        d.attempts = p.max_attempts;
        settle(
            &mut d,
            Attempt::Retry {
                code: Some(503),
                error: "HTTP 503".into(),
                retry_after: None,
            },
            &p,
            t0(),
            0.3,
        );
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!(
            d.last_error.as_deref(),
            Some("gave up after 5 attempts: HTTP 503")
        );
        let mut f = claimed();
        settle(
            &mut f,
            Attempt::Failed {
                code: Some(404),
                error: "HTTP 404".into(),
            },
            &p,
            t0(),
            0.0,
        );
        assert_eq!(f.state, DeliveryState::Failed);
        assert_eq!(f.attempts, 1, "a final refusal is not retried");
    }

    #[test]
    fn retry_after_as_seconds_or_http_date() {
        assert_eq!(parse_retry_after("30", t0()), Some(Duration::seconds(30)));
        assert_eq!(parse_retry_after(" 0 ", t0()), Some(Duration::zero()));
        assert_eq!(
            parse_retry_after("Thu, 15 Jan 2026 09:02:00 GMT", t0()),
            Some(Duration::seconds(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 15 Jan 2026 08:00:00 GMT", t0()),
            Some(Duration::zero())
        );
        assert_eq!(parse_retry_after("soon", t0()), None);
        assert_eq!(parse_retry_after("-5", t0()), None);
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let d = claimed();
        assert!(!format!("{d:?}").contains("secret"));
    }
}
