//! Whether a room may serve requests yet. An object whose storage is empty may be a new room, or
//! a room whose storage was lost: then it must come back from its newest readable snapshot
//! before it hands out a single sequence number. While the index says the room existed and no
//! snapshot could be loaded (corrupt, missing, or D1/R2 failing), the room refuses requests with
//! a retryable error instead of starting empty and reusing numbers.

use edgeroom_protocol::ErrorCode;

use crate::{ApiError, Snapshot};

/// First wait before looking for a snapshot again after a failed restore.
const FIRST_RETRY_MS: u64 = 500;
/// Longest wait between two restore attempts.
const MAX_RETRY_MS: u64 = 30_000;

/// What the index and the snapshot store say about a room with empty storage.
#[derive(Debug)]
pub enum RestoreSource {
    /// Neither the index nor any snapshot knows the room: it is new.
    NewRoom,
    /// The newest snapshot that could be read and verified.
    Snapshot(Box<Snapshot>),
    /// The room existed but nothing could be loaded now (every snapshot unreadable, or D1 or R2
    /// failed); the message says why.
    Unavailable(String),
}

/// The room's readiness, kept by the shell in memory (a new instance checks again).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RestoreGate {
    /// Not checked yet by this instance.
    #[default]
    Unchecked,
    /// Storage holds the room (it was not empty, was restored, or the room is new).
    Ready,
    /// The last attempt failed; requests are refused until `retry_at_ms`, then it tries again.
    Blocked {
        /// Why the room is unavailable.
        reason: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// When to try again, in milliseconds since the Unix epoch.
        retry_at_ms: u64,
    },
}

impl RestoreGate {
    /// Whether the shell should look for a snapshot now (storage is empty and no attempt is
    /// waiting out its backoff).
    pub fn should_try(&self, now_ms: u64) -> bool {
        match self {
            Self::Unchecked => true,
            Self::Ready => false,
            Self::Blocked { retry_at_ms, .. } => now_ms >= *retry_at_ms,
        }
    }

    /// The room is servable.
    pub fn ready(&mut self) {
        *self = Self::Ready;
    }

    /// An attempt failed at `now_ms`: back off exponentially.
    pub fn failed(&mut self, reason: String, now_ms: u64) {
        let attempts = match self {
            Self::Blocked { attempts, .. } => attempts.saturating_add(1),
            _ => 1,
        };
        let wait = FIRST_RETRY_MS.saturating_mul(1 << attempts.saturating_sub(1).min(16)).min(MAX_RETRY_MS);
        *self = Self::Blocked { reason, attempts, retry_at_ms: now_ms.saturating_add(wait) };
    }

    /// Records the outcome of a restore attempt at `now_ms`.
    pub fn settle(&mut self, outcome: Result<(), String>, now_ms: u64) {
        match outcome {
            Ok(()) => self.ready(),
            Err(reason) => self.failed(reason, now_ms),
        }
    }

    /// `Ok` when requests may be served; else the retryable error clients get.
    pub fn check(&self) -> Result<(), ApiError> {
        match self {
            Self::Blocked { reason, .. } => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("the room's history could not be restored yet ({reason}); retry shortly"),
            )),
            Self::Unchecked | Self::Ready => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_restore_blocks_with_backoff_until_one_succeeds() {
        let mut gate = RestoreGate::default();
        assert!(gate.should_try(0));
        assert!(gate.check().is_ok());
        gate.failed("checksum mismatch".into(), 1_000);
        assert_eq!(gate.check().unwrap_err().code, ErrorCode::Unavailable);
        assert!(!gate.should_try(1_499));
        assert!(gate.should_try(1_500));
        gate.failed("R2 failed".into(), 1_500);
        assert!(!gate.should_try(2_499), "the second wait is longer");
        assert!(gate.should_try(2_500));
        for _ in 0..30 {
            gate.failed("still".into(), 0);
        }
        assert!(gate.should_try(MAX_RETRY_MS), "waits are capped");
        gate.ready();
        assert!(!gate.should_try(u64::MAX));
        assert!(gate.check().is_ok());
    }
}
