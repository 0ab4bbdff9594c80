//! The original's own normalisation and fingerprint outputs (`tests/fixtures/fingerprints.json`,
//! computed under Node.js 20) must be reproduced byte for byte, so that fingerprints stored by the
//! original carry over.

use dispatch_core::event::{fingerprint, fingerprint_message, normalize_message};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vector {
    note: String,
    source: String,
    feature: String,
    msg: String,
    normalized: String,
    fingerprint: String,
}

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fingerprints.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

#[test]
fn every_vector_matches_the_original() {
    let vectors = vectors();
    assert!(!vectors.is_empty(), "no vectors loaded");
    let mut failures = Vec::new();
    for v in &vectors {
        let (normalized, fp) = fingerprint_message(&v.source, &v.feature, &v.msg);
        if normalized != v.normalized {
            failures.push(format!(
                "[{}] normalized: got {normalized:?}, want {:?} (msg {:?})",
                v.note, v.normalized, v.msg
            ));
        }
        if fp.as_str() != v.fingerprint {
            failures.push(format!(
                "[{}] fingerprint: got {fp}, want {} (source {:?}, feature {:?})",
                v.note, v.fingerprint, v.source, v.feature
            ));
        }
        // The two halves agree with the combined call.
        assert_eq!(normalize_message(&v.msg), normalized, "[{}]", v.note);
        assert_eq!(
            fingerprint(&v.source, &v.feature, &normalized),
            fp,
            "[{}]",
            v.note
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn fingerprints_are_lowercase_hex_sha256() {
    for v in vectors() {
        let (_, fp) = fingerprint_message(&v.source, &v.feature, &v.msg);
        assert_eq!(fp.as_str().len(), 64, "[{}]", v.note);
        assert!(
            fp.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "[{}] {fp}",
            v.note
        );
        assert_eq!(fp.short(), &fp.as_str()[..12], "[{}]", v.note);
    }
}
