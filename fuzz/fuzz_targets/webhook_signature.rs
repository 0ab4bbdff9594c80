//! Inbound webhook signature checks (GitHub `X-Hub-Signature-256`, `Sentry-Hook-Signature`,
//! Grafana's HMAC with its timestamp): any key, signature text, timestamp and body; no panic,
//! and the checks agree with an HMAC computed here: the right signature always passes, the
//! same signature over a changed body never does.
//!
//! Input layout: byte 0 = key length (mod 64), the key, then the signature header up to the
//! first `\n`, then the timestamp header up to the next `\n` (empty = not sent), then the body.
#![no_main]
use dispatch_adapters::signature::{GrafanaRefusal, github_valid, grafana_check, sentry_valid};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const NOW: i64 = 1_800_000_000;

fn sign(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn line(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 64).min(rest.len());
    let (key, rest) = rest.split_at(n);
    let (sig, rest) = line(rest);
    let (ts, body) = line(rest);
    let sig = String::from_utf8_lossy(sig);
    let ts = String::from_utf8_lossy(ts);
    let ts = (!ts.is_empty()).then_some(ts.as_ref());

    // Whatever was sent: no panic.
    let _ = github_valid(key, body, Some(&sig));
    let _ = sentry_valid(key, body, Some(&sig));
    let _ = grafana_check(key, body, &sig, ts, NOW);

    // The right signatures pass; over another body they fail.
    let good = sign(key, &[body]);
    assert!(github_valid(key, body, Some(&format!("sha256={good}"))));
    assert!(sentry_valid(key, body, Some(&good)));
    assert_eq!(grafana_check(key, body, &good, None, NOW), Ok(()));
    let mut other = body.to_vec();
    other.push(b'x');
    assert!(!github_valid(key, &other, Some(&format!("sha256={good}"))));
    assert!(!sentry_valid(key, &other, Some(&good)));
    assert_eq!(
        grafana_check(key, &other, &good, None, NOW),
        Err(GrafanaRefusal::Signature)
    );
    if let Some(ts) = ts {
        let signed = sign(key, &[ts.trim().as_bytes(), b":", body]);
        let fresh = ts
            .trim()
            .parse::<i64>()
            .is_ok_and(|t| (NOW - 300..=NOW + 300).contains(&t));
        let r = grafana_check(key, body, &signed, Some(ts), NOW);
        if fresh {
            assert_eq!(r, Ok(()));
        } else {
            assert_eq!(r, Err(GrafanaRefusal::Timestamp));
        }
    }
});
