use super::normalize::normalize_message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Lowercase hex SHA-256 of `source|feature|normalized` — byte-for-byte the original's value, so
/// fingerprints stored by it carry over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first 12 hex digits, as shown in issue descriptions.
    pub fn short(&self) -> &str {
        self.0.get(..12).unwrap_or(&self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fingerprint of an already normalised message. Source and feature are used as they are (not
/// normalised, not lower-cased), and a `|` inside them is not escaped — as in the original.
pub fn fingerprint(source: &str, feature: &str, normalized: &str) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update(b"|");
    h.update(feature.as_bytes());
    h.update(b"|");
    h.update(normalized.as_bytes());
    Fingerprint(hex::encode(h.finalize()))
}

/// Normalises `msg` and fingerprints it: `(normalized, fingerprint)`.
pub fn fingerprint_message(source: &str, feature: &str, msg: &str) -> (String, Fingerprint) {
    let normalized = normalize_message(msg);
    let fp = fingerprint(source, feature, &normalized);
    (normalized, fp)
}
