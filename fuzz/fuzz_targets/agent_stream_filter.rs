//! Claude Code stream-json lines through the terminal filter (what the local runner and the
//! live terminal show): any lines, any order, no panic; the summary is always readable.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut filter = dispatch_core::agent_output::StreamFilter::new();
    for line in text.split('\n') {
        let _ = filter.push_line(line);
    }
    let _ = filter.summary();
});
