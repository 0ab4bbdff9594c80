//! Inbound webhook signatures (feature `signature`): HMAC-SHA256 over the exact body bytes,
//! compared in constant time. The server checks every signed webhook with these before it
//! parses anything; kept here, free of HTTP, so that `fuzz/` can feed them any bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a Grafana signature's timestamp may be from now, either way.
pub const GRAFANA_MAX_SKEW_SECS: i64 = 300;

/// Whether `signature_hex` is the HMAC-SHA256 of the concatenated `parts` under `key`. Checked
/// in constant time; text that is not hex of the right length is simply wrong.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    // HMAC takes keys of any length; the error case cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return false;
    };
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(&expected).is_ok()
}

/// GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC of the body); a missing header is
/// wrong.
pub fn github_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let signature = header
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .unwrap_or("");
    !signature.is_empty() && hmac_matches(secret, &[body], signature)
}

/// Sentry's `Sentry-Hook-Signature` (hex HMAC of the body under the client secret).
pub fn sentry_valid(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let signature = header.unwrap_or("");
    !signature.is_empty() && hmac_matches(secret, &[body], signature)
}

/// Why a Grafana signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrafanaRefusal {
    /// The timestamp header was sent but is not a number of seconds within
    /// [`GRAFANA_MAX_SKEW_SECS`] of now.
    Timestamp,
    /// The signature does not match.
    Signature,
}

/// Grafana's contact-point HMAC: hex(HMAC-SHA256(secret, [timestamp + ":"] + body)); a
/// timestamp, when sent, must be within five minutes of `now` (Unix seconds).
pub fn grafana_check(
    secret: &[u8],
    body: &[u8],
    signature: &str,
    timestamp: Option<&str>,
    now: i64,
) -> Result<(), GrafanaRefusal> {
    let timestamp = timestamp.map(str::trim);
    if let Some(ts) = timestamp {
        let fresh = ts.parse::<i64>().ok().is_some_and(|t| {
            now.checked_sub(t)
                .is_some_and(|d| d.abs() <= GRAFANA_MAX_SKEW_SECS)
        });
        if !fresh {
            return Err(GrafanaRefusal::Timestamp);
        }
    }
    let ok = match timestamp {
        Some(ts) => hmac_matches(secret, &[ts.as_bytes(), b":", body], signature),
        None => hmac_matches(secret, &[body], signature),
    };
    if ok {
        Ok(())
    } else {
        Err(GrafanaRefusal::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's documented test vector.
    const SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const KEY: &[u8] = b"It's a Secret to Everybody";

    #[test]
    fn hmac_checks_bytes_hex_and_length() {
        let sig = SIG;
        let key = KEY;
        assert!(hmac_matches(key, &[b"Hello, World!"], sig));
        assert!(hmac_matches(key, &[b"Hello, ", b"World!"], sig));
        assert!(hmac_matches(key, &[b"Hello, World!"], &sig.to_uppercase()));
        assert!(!hmac_matches(key, &[b"Hello, World?"], sig));
        assert!(!hmac_matches(b"other", &[b"Hello, World!"], sig));
        assert!(!hmac_matches(key, &[b"Hello, World!"], &sig[..62]));
        assert!(!hmac_matches(key, &[b"Hello, World!"], &format!("{sig}00")));
        assert!(!hmac_matches(key, &[b"Hello, World!"], ""));
        assert!(!hmac_matches(key, &[b"Hello, World!"], "zz"));
    }

    #[test]
    fn github_and_sentry_headers() {
        let body = b"Hello, World!";
        assert!(github_valid(KEY, body, Some(&format!(" sha256={SIG} "))));
        assert!(
            !github_valid(KEY, body, Some(SIG)),
            "the prefix is required"
        );
        assert!(!github_valid(KEY, body, Some("sha256=")));
        assert!(!github_valid(KEY, body, None));
        assert!(sentry_valid(KEY, body, Some(SIG)));
        assert!(!sentry_valid(KEY, body, Some("")));
        assert!(!sentry_valid(KEY, body, None));
    }

    #[test]
    fn grafana_timestamps_are_signed_and_fresh() {
        let body = b"{}";
        let sign = |parts: &[&[u8]]| {
            let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("key");
            parts.iter().for_each(|p| mac.update(p));
            hex::encode(mac.finalize().into_bytes())
        };
        let now = 1_800_000_000;
        let plain = sign(&[body]);
        assert_eq!(grafana_check(KEY, body, &plain, None, now), Ok(()));
        let ts = (now - 299).to_string();
        let signed = sign(&[ts.as_bytes(), b":", body]);
        assert_eq!(grafana_check(KEY, body, &signed, Some(&ts), now), Ok(()));
        assert_eq!(
            grafana_check(KEY, body, &plain, Some(&ts), now),
            Err(GrafanaRefusal::Signature),
            "the timestamp is part of what is signed"
        );
        assert_eq!(
            grafana_check(KEY, body, &signed, Some(&ts), now + 2),
            Err(GrafanaRefusal::Timestamp)
        );
        assert_eq!(
            grafana_check(KEY, body, &signed, Some("soon"), now),
            Err(GrafanaRefusal::Timestamp)
        );
        assert_eq!(
            grafana_check(KEY, body, &signed, Some(&i64::MIN.to_string()), now),
            Err(GrafanaRefusal::Timestamp),
            "no overflow"
        );
    }
}
