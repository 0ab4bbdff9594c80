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

/// A page of terminal output holds at most this much content (bytes) past its first chunk: a
/// replay of 500 chunks of up to 1 MiB each must not be one 500 MiB read per viewer. Readers
/// page on with `after` until a page comes back empty.
pub const PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What every store's `read_terminal` applies while it reads chunks in order: the first chunk
/// always (so a reader always moves on), the next ones while the page stays within
/// [`PAGE_MAX_BYTES`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PageBudget {
    used: usize,
    taken: usize,
}

impl PageBudget {
    /// Whether a chunk of `bytes` still fits; counts it when it does.
    pub fn admit(&mut self, bytes: usize) -> bool {
        if self.taken > 0 && self.used.saturating_add(bytes) > PAGE_MAX_BYTES {
            return false;
        }
        self.used = self.used.saturating_add(bytes);
        self.taken += 1;
        true
    }
}

/// Where a posted chunk goes, given the run's last stored sequence number (0 for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkAppend {
    /// Store it as this number.
    Insert(u64),
    /// A retry of a chunk already stored under this number: answer the stored one (see
    /// [`replayed_chunk`]).
    Replay(u64),
}

/// The numbering rule of terminal output, for every store: unnumbered chunks follow the last
/// one; a numbered chunk is the next one, or a retry of one already stored; anything else is a
/// gap the sender must not leave.
pub fn plan_chunk_append(last: u64, seq: Option<u64>) -> crate::error::Result<ChunkAppend> {
    match seq {
        None => Ok(ChunkAppend::Insert(last + 1)),
        Some(n) if n >= 1 && n <= last => Ok(ChunkAppend::Replay(n)),
        Some(n) if n == last + 1 => Ok(ChunkAppend::Insert(n)),
        Some(n) => Err(crate::error::Error::invalid(
            "seq",
            format!("expected sequence number {}, got {n}", last + 1),
        )),
    }
}

/// A retried chunk: the stored one when the content is the same; a conflict when the sender
/// reuses a number for other output (it would otherwise be dropped without a word); invalid
/// when the stored chunk was pruned.
pub fn replayed_chunk(
    stored: Option<TerminalChunk>,
    seq: u64,
    content: &str,
) -> crate::error::Result<TerminalChunk> {
    match stored {
        Some(c) if c.content == content => Ok(c),
        Some(c) => Err(crate::error::Error::conflict(format!(
            "terminal chunk {} was already stored with other content ({} bytes, not {}); number new output after the last chunk",
            c.seq,
            c.content.len(),
            content.len()
        ))),
        None => Err(crate::error::Error::invalid(
            "seq",
            format!("chunk {seq} is no longer kept; number new output after the last chunk"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn chunk_numbers() {
        assert_eq!(plan_chunk_append(0, None).unwrap(), ChunkAppend::Insert(1));
        assert_eq!(plan_chunk_append(4, None).unwrap(), ChunkAppend::Insert(5));
        assert_eq!(
            plan_chunk_append(4, Some(5)).unwrap(),
            ChunkAppend::Insert(5)
        );
        assert_eq!(
            plan_chunk_append(4, Some(2)).unwrap(),
            ChunkAppend::Replay(2)
        );
        assert_eq!(
            plan_chunk_append(4, Some(4)).unwrap(),
            ChunkAppend::Replay(4)
        );
        for bad in [0, 6, 100] {
            let e = plan_chunk_append(4, Some(bad)).unwrap_err();
            assert_eq!(e.field(), Some("seq"), "{bad}");
        }
    }

    #[test]
    fn replays_match_or_conflict() {
        let c = TerminalChunk {
            run_id: RunId::new(),
            seq: 2,
            content: "hello\n".into(),
            at: chrono::Utc::now(),
        };
        assert_eq!(replayed_chunk(Some(c.clone()), 2, "hello\n").unwrap(), c);
        let e = replayed_chunk(Some(c), 2, "other\n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains("chunk 2"), "{}", e.message);
        assert_eq!(
            replayed_chunk(None, 2, "x").unwrap_err().field(),
            Some("seq")
        );
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;

    #[test]
    fn a_page_takes_the_first_chunk_always_and_the_rest_within_the_budget() {
        let mut b = PageBudget::default();
        assert!(
            b.admit(PAGE_MAX_BYTES * 2),
            "the first chunk, however large"
        );
        assert!(!b.admit(1), "nothing after an oversized first chunk");
        let mut b = PageBudget::default();
        assert!(b.admit(PAGE_MAX_BYTES / 2));
        assert!(b.admit(PAGE_MAX_BYTES / 2), "exactly full");
        assert!(!b.admit(1));
    }
}
