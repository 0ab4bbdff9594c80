use crate::Timestamp;
use crate::ids::RunId;
use serde::{Deserialize, Serialize};

/// One piece of an agent's terminal output. `seq` starts at 1 and is gapless per run, so a viewer
/// that saw up to `seq` resumes from `seq + 1`; a transcript is the chunks concatenated in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalChunk {
    pub run_id: RunId,
    pub seq: u64,
    pub content: String,
    pub at: Timestamp,
}
