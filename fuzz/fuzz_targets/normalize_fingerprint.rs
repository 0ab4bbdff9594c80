//! Message normalisation and fingerprinting (the 13 rules of the original, regexes over any
//! text): no panic, and a fingerprint is always 64 lowercase hex digits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &str)| {
    let (source, feature, msg) = input;
    let (_normalized, fp) = dispatch_core::event::fingerprint_message(source, feature, msg);
    assert!(
        fp.as_str().len() == 64
            && fp
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
});
