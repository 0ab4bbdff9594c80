//! The Messages API's streamed answer: any bytes, cut into chunks of any size (byte 0), through
//! the adapter's `DeltaDecoder` (UTF-8 carried across chunks, SSE lines, events to deltas) and
//! the core's `DeltaAssembler`, as `ClaudeLlm::stream` and its callers do. No panic, and the
//! chunking changes nothing: the deltas and the assembled answer are those of one whole chunk.
#![no_main]
use dispatch_adapters::claude_sse::DeltaDecoder;
use dispatch_core::ports::{DeltaAssembler, LlmDelta};
use libfuzzer_sys::fuzz_target;

/// The deltas (errors as their messages) and the assembled answer, or where assembly failed.
fn run(body: &[u8], chunk: usize) -> (Vec<Result<LlmDelta, String>>, String) {
    let mut dec = DeltaDecoder::new();
    let mut deltas = Vec::new();
    for c in body.chunks(chunk) {
        dec.push_bytes(c);
        while let Some(d) = dec.pop() {
            deltas.push(d.map_err(|e| e.to_string()));
        }
    }
    dec.finish();
    while let Some(d) = dec.pop() {
        deltas.push(d.map_err(|e| e.to_string()));
    }
    assert!(dec.is_done());
    let mut asm = DeltaAssembler::new();
    let mut failed = None;
    for d in deltas.iter().flatten() {
        if let Err(e) = asm.push(d) {
            failed = Some(e.to_string());
            break;
        }
    }
    let answer = match failed {
        Some(e) => format!("assembly failed: {e}"),
        None => format!("{:?}", asm.finish()),
    };
    (deltas, answer)
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, body)) = data.split_first() else {
        return;
    };
    let chunk = size as usize % 97 + 1;
    let whole = run(body, body.len().max(1));
    let cut = run(body, chunk);
    assert_eq!(whole, cut, "chunks of {chunk} bytes");
    // Nothing after the end: at most one error, and it is the last delta.
    let errors = whole.0.iter().filter(|d| d.is_err()).count();
    assert!(errors <= 1);
    if errors == 1 {
        assert!(whole.0.last().is_some_and(|d| d.is_err()));
    }
});
