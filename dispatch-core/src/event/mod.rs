//! Error events from any source, their normalisation and fingerprint (spec §5.1–5.2), and the
//! issue an unseen fingerprint becomes (§5.3, §5.5).

mod describe;
mod error_event;
mod fingerprint;
mod normalize;

pub use describe::{issue_description, issue_title, priority_for};
pub use error_event::ErrorEvent;
pub use fingerprint::{Fingerprint, fingerprint, fingerprint_message};
pub use normalize::normalize_message;
