//! Placeholder; filled by the conformance suite.
