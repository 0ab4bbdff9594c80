//! Grafana unified-alerting webhook bodies: any bytes parse to events or a clear error, never a
//! panic; every event parsed is valid for ingest (the engine's own check).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(batch) = dispatch_adapters::loki::parse_payload(body) {
        for e in &batch.events {
            let _ = e.validate();
            let _ = e.dedupe_key();
        }
    }
});
