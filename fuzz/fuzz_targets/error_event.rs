//! An error event from JSON (the shape the REST ingest and the Python binding accept) through
//! validation and the text of a new issue: no panic on any field values.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<dispatch_core::event::ErrorEvent>(data) else {
        return;
    };
    if event.validate().is_err() {
        return;
    }
    let (normalized, fp) =
        dispatch_core::event::fingerprint_message(&event.source, &event.feature, &event.message);
    let _ = dispatch_core::event::issue_title(&event);
    let _ = dispatch_core::event::priority_for(&event);
    let _ = dispatch_core::event::issue_description(&event, &normalized, &fp);
    let _ = event.dedupe_key_with(&fp);
});
