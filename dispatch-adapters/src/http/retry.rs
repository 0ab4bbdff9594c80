//! Retrying HTTP calls: capped exponential backoff with full jitter, the server's own wait
//! (`Retry-After` in seconds or as an HTTP-date, `retry-after-ms`), and the "maybe applied"
//! distinction that non-idempotent callers need before they repeat a request.
//!
//! One try is classified into an [`Attempt`]; [`retry`] runs tries until an answer, a final
//! failure or the attempt budget. Callers with their own rules between tries (GitHub's dispatch
//! looks for the run it may have started before it repeats) loop themselves over the same
//! [`Attempt`] and [`RetryConfig::backoff`].

use super::client::Reply;
use dispatch_core::{Error, Result};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::future::Future;
use std::time::{Duration, SystemTime};

/// How a call is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Tries per call, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff ceiling before the 2nd try; doubles after each further failure.
    pub base_delay: Duration,
    /// Upper bound of one backoff step.
    pub max_delay: Duration,
    /// The longest wait the server may ask for (`Retry-After`, a rate-limit reset) that the call
    /// sits out itself. A longer one ends the call with the error, for the caller's own backoff.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// The ceiling of the wait before try `attempt + 1`, after `attempt` (1-based) failed:
    /// `base_delay * 2^(attempt-1)`, capped at `max_delay`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before try `attempt + 1`: uniformly random in `[0, ceiling(attempt)]` ("full
    /// jitter"), so that clients failing together do not come back together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::random_range(0..=nanos))
    }
}

/// The result of one try: by default a [`Reply`] read whole; a streaming caller's `T` is the
/// open response.
#[derive(Debug)]
pub enum Attempt<T = Reply> {
    /// An answer to act on (2xx, or a 4xx that repeating cannot fix).
    Answer(T),
    /// Worth another try after `wait` (the backoff when `None`). `maybe_applied`: the request
    /// may have reached the server and taken effect (5xx, a timeout, a broken answer), so a
    /// non-idempotent caller must check before repeating it. A connection that never opened,
    /// 408 and 429 were not applied.
    Retry {
        wait: Option<Duration>,
        error: Error,
        maybe_applied: bool,
    },
    /// Give up now.
    Fail(Error),
}

/// Whether a request may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// GET, PUT, DELETE, cancel, a query: repeating has the effect of one call.
    Idempotent,
    /// A POST that creates something: repeated only when the failed try surely was not applied.
    NonIdempotent,
}

/// Runs `attempt` (given the 1-based try number) until it answers, fails for good, or the budget
/// is spent. A requested wait longer than `max_retry_after` ends the call with its error; a
/// non-idempotent call stops at the first failure that may have been applied.
pub async fn retry<T, F, Fut>(
    cfg: &RetryConfig,
    what: &str,
    idempotency: Idempotency,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let max = cfg.max_attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match attempt(n).await {
            Attempt::Answer(r) => return Ok(r),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry {
                wait,
                error,
                maybe_applied,
            } => {
                if maybe_applied && idempotency == Idempotency::NonIdempotent {
                    return Err(after_attempts(error, n));
                }
                if n >= max {
                    return Err(after_attempts(error, n));
                }
                let wait = match wait {
                    Some(w) if w > cfg.max_retry_after => return Err(after_attempts(error, n)),
                    Some(w) => w,
                    None => cfg.backoff(n),
                };
                tracing::warn!(what, attempt = n, wait_ms = wait.as_millis() as u64, error = %error, "HTTP call failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Adds the attempt count to the final error of a retried call.
pub fn after_attempts(mut error: Error, attempts: u32) -> Error {
    if attempts > 1 {
        error.message = format!("{} (after {attempts} attempts)", error.message);
    }
    error
}

/// The wait a server asks for: `retry-after-ms` (Anthropic), else `Retry-After` as seconds
/// (possibly fractional) or as an HTTP-date (the time left until it, zero when past).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms.min(1e12) / 1000.0));
    }
    parse_retry_after(get(RETRY_AFTER.as_str())?, now)
}

/// One `Retry-After` value: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // A year at most: anything longer is a broken header, not a plan.
        return Some(Duration::from_secs_f64(secs.min(86_400.0 * 365.0)));
    }
    let at: SystemTime = chrono::DateTime::parse_from_rfc2822(v).ok()?.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let cfg = RetryConfig {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            max_retry_after: Duration::from_secs(1),
        };
        assert_eq!(cfg.ceiling(1), Duration::from_millis(100));
        assert_eq!(cfg.ceiling(2), Duration::from_millis(200));
        assert_eq!(cfg.ceiling(3), Duration::from_millis(350));
        assert_eq!(cfg.ceiling(40), Duration::from_millis(350));
        let waits: Vec<Duration> = (0..200).map(|_| cfg.backoff(3)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(350)));
        // Full jitter spreads the waits (200 identical draws would mean no jitter).
        assert!(waits.iter().any(|w| *w != waits[0]));
    }

    #[test]
    fn retry_after_in_seconds_ms_or_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(2)));
        h.insert("retry-after", HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        let date = chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(90))
            .to_rfc2822()
            .replace("+0000", "GMT");
        h.insert("retry-after", HeaderValue::from_str(&date).expect("header"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(150)));
    }
}
