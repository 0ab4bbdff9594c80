//! Authentication: a signed, expiring session cookie for people (after `POST /api/auth` with
//! `DISPATCH_PASSWORD`), `Authorization: Bearer DISPATCH_API_KEY` for agents and automation.
//! Every secret comparison is constant-time; login attempts are rate-limited per client.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use dispatch_core::customer::constant_time_eq;
use dispatch_core::issue::Actor;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "dispatch_session";
/// The header cookie-authenticated writes must carry (the web UI's scripts send it).
pub const CSRF_HEADER: &str = "x-dispatch-csrf";

type HmacSha256 = Hmac<Sha256>;

fn sign(secret: &str, payload: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for HMAC.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A new session token `v1.<expires unix>.<nonce>.<hmac>`.
pub fn new_session(
    secret: &str,
    ttl: chrono::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let payload = format!("v1.{}.{}", (now + ttl).timestamp(), hex::encode(nonce));
    let sig = sign(secret, &payload);
    format!("{payload}.{sig}")
}

/// Whether a session token is ours and not expired.
pub fn verify_session(secret: &str, token: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some((payload, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let mut parts = payload.split('.');
    let (Some("v1"), Some(exp), Some(nonce), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    if nonce.len() != 32 || sig.len() != 64 {
        return false;
    }
    let Ok(exp) = exp.parse::<i64>() else {
        return false;
    };
    let expected = sign(secret, payload);
    constant_time_eq(expected.as_bytes(), sig.as_bytes()) && exp > now.timestamp()
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Session,
    ApiKey,
}

/// An authenticated request (session cookie or API key).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub method: AuthMethod,
}

impl Authenticated {
    /// Who is acting, for history entries (as the original: people via the UI, agents via the key).
    pub fn actor(&self) -> Actor {
        match self.method {
            AuthMethod::Session => Actor::user("User"),
            AuthMethod::ApiKey => Actor::agent("GitHub Actions"),
        }
    }
}

pub fn api_key_ok(state: &AppState, headers: &HeaderMap) -> bool {
    bearer(headers)
        .is_some_and(|t| constant_time_eq(t.as_bytes(), state.config.api_key.expose().as_bytes()))
}

pub fn session_ok(state: &AppState, headers: &HeaderMap) -> bool {
    cookie_value(headers, SESSION_COOKIE).is_some_and(|t| {
        verify_session(state.config.session_secret.expose(), t, chrono::Utc::now())
    })
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if api_key_ok(state, &parts.headers) {
            return Ok(Authenticated {
                method: AuthMethod::ApiKey,
            });
        }
        if session_ok(state, &parts.headers) {
            // A cookie rides along on requests other sites make; a custom header does not
            // (browsers allow it cross-origin only after a CORS preflight, which we never
            // grant). So a write by cookie must carry the header our own scripts send.
            let safe = matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
            );
            if !safe && !parts.headers.contains_key(CSRF_HEADER) {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "CSRF",
                    format!(
                        "a request authenticated by the session cookie must send the {CSRF_HEADER} header"
                    ),
                ));
            }
            return Ok(Authenticated {
                method: AuthMethod::Session,
            });
        }
        Err(ApiError::unauthorized(
            "authentication required: log in, or send Authorization: Bearer <DISPATCH_API_KEY>",
        ))
    }
}

/// A network: an address and how many leading bits of it count (`10.0.0.0/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `ip` or `ip/prefix`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip, Some(p.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let net: std::net::IpAddr = ip.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        fn bits(ip: std::net::IpAddr) -> (u128, u32) {
            match ip {
                std::net::IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                std::net::IpAddr::V6(v) => (u128::from(v), 128),
            }
        }
        // An IPv4 client behind an IPv6 socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            std::net::IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let ((a, len_a), (b, len_b)) = (bits(self.net), bits(ip));
        if len_a != len_b {
            return false;
        }
        let shift = len_a - u32::from(self.prefix);
        shift >= len_a || (a >> shift) == (b >> shift)
    }
}

/// The client a request comes from: the peer, unless the peer is one of the trusted proxies
/// (`TRUSTED_PROXIES`); then the nearest address in `X-Forwarded-For` that is not a trusted
/// proxy (the right-most: entries further left are whatever the client claimed).
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| forwarded.first().copied())
        .unwrap_or(peer)
}

/// Clients a limiter remembers at most: beyond it (after expired windows were dropped) the
/// client whose window is oldest is forgotten, so many addresses cannot grow the map without
/// bound.
const LIMITER_CLIENTS: usize = 10_000;

/// Fixed-window login limiter per client address.
#[derive(Debug)]
pub struct LoginLimiter {
    max: u32,
    window: Duration,
    clients: usize,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self::with_clients(max, window, LIMITER_CLIENTS)
    }

    /// A limiter remembering at most `clients` addresses.
    pub fn with_clients(max: u32, window: Duration, clients: usize) -> Self {
        LoginLimiter {
            max,
            window,
            clients: clients.max(1),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt; `Err(retry_after)` when the client is over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let mut m = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if m.len() >= self.clients && !m.contains_key(&ip) {
            m.retain(|_, (_, start)| now.duration_since(*start) < self.window);
            if m.len() >= self.clients
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, (_, start))| *start)
                    .map(|(k, _)| *k)
            {
                m.remove(&oldest);
            }
        }
        let e = m.entry(ip).or_insert((0, now));
        if now.duration_since(e.1) >= self.window {
            *e = (0, now);
        }
        if e.0 >= self.max {
            return Err(self.window.saturating_sub(now.duration_since(e.1)));
        }
        e.0 += 1;
        Ok(())
    }

    /// A successful login clears the client's count.
    pub fn reset(&self, ip: IpAddr) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_peer_unless_a_trusted_proxy_forwarded_it() {
        let trusted = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("::1").unwrap(),
        ];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", v.parse().unwrap());
            h
        };
        // Not a proxy: its header is not believed.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &xff("1.2.3.4"), &trusted),
            ip("203.0.113.9")
        );
        // A proxy: the right-most address it did not add itself.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                &xff("6.6.6.6, 198.51.100.7, 10.9.9.9"),
                &trusted
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("::1"), &xff("198.51.100.8"), &trusted),
            ip("198.51.100.8")
        );
        assert_eq!(
            client_ip(ip("10.1.2.3"), &HeaderMap::new(), &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_ip(ip("10.1.2.3"), &xff("junk, "), &trusted),
            ip("10.1.2.3")
        );
        assert!(
            Cidr::parse("10.0.0.0/8")
                .unwrap()
                .contains(ip("::ffff:10.4.5.6"))
        );
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
    }

    #[test]
    fn sessions_verify_and_forgeries_fail() {
        let now = chrono::Utc::now();
        let t = new_session("k".repeat(40).as_str(), chrono::Duration::hours(1), now);
        assert!(verify_session(&"k".repeat(40), &t, now));
        assert!(!verify_session(&"x".repeat(40), &t, now), "other key");
        assert!(
            !verify_session(&"k".repeat(40), &t, now + chrono::Duration::hours(2)),
            "expired"
        );
        let mut forged = t.clone();
        forged.replace_range(3..4, if &t[3..4] == "9" { "8" } else { "9" });
        assert!(
            !verify_session(&"k".repeat(40), &forged, now),
            "tampered expiry"
        );
        for junk in ["", "x", "v1.1.2.3", "dispatch", "v1..."] {
            assert!(!verify_session(&"k".repeat(40), junk, now));
        }
    }

    #[test]
    fn limiter_blocks_after_max_and_resets() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert!(l.check(ip).is_ok() && l.check(ip).is_ok() && l.check(ip).is_ok());
        assert!(l.check(ip).is_err());
        l.reset(ip);
        assert!(l.check(ip).is_ok());
    }

    #[test]
    fn the_limiter_remembers_a_bounded_number_of_clients() {
        let l = LoginLimiter::with_clients(1, Duration::from_secs(60), 3);
        let ip = |n: u8| -> IpAddr { [10, 0, 0, n].into() };
        for n in 0..50 {
            let _ = l.check(ip(n));
        }
        assert_eq!(l.seen.lock().unwrap().len(), 3, "bounded");
        // The newest clients are still limited; the oldest were forgotten.
        assert!(l.check(ip(49)).is_err());
        assert!(l.check(ip(0)).is_ok());
    }
}
