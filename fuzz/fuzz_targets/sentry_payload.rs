//! Sentry issue webhooks: no panic on any body. The resource header is `issue` (the only one
//! parsed) except when the first byte says otherwise, so the fuzzer spends its time in the JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (resource, body) = match data.split_first() {
        Some((0xFF, rest)) => (Some("event_alert"), rest),
        _ => (Some("issue"), data),
    };
    if let Ok(batch) = dispatch_adapters::sentry::parse_payload(resource, body) {
        for e in &batch.events {
            let _ = e.validate();
            let _ = e.dedupe_key();
        }
    }
});
