//! The rules every WebSocket frame passes before an object looks at it, the same for room and
//! counter sockets: a size limit, a per-connection rate limit, strikes that close a connection
//! that keeps sending refused frames, and the heartbeat window.

use edgeroom_protocol::{close_code, ErrorCode};

use crate::rate::{Strikes, TokenBucket};
use crate::{ApiError, Limits};

/// One connection's standing: its rate bucket, its strikes and when it was last heard from.
/// Memory only: after an eviction a connection starts with a full bucket and no strikes.
#[derive(Debug, Clone)]
pub struct Admission {
    bucket: TokenBucket,
    /// Bytes the connection may still make the room send to it alone.
    send_budget: TokenBucket,
    strikes: Strikes,
    last_seen_ms: u64,
}

impl Admission {
    /// A connection first seen at `now_ms`, with a full bucket.
    pub fn new(limits: &Limits, now_ms: u64) -> Self {
        Self {
            bucket: TokenBucket::full(limits.rate_burst, now_ms),
            send_budget: TokenBucket::full(limits.send_budget_bytes as f64, now_ms),
            strikes: Strikes::default(),
            last_seen_ms: now_ms,
        }
    }

    /// Checks one frame of `frame_len` bytes received at `now_ms`: over the size limit or over the
    /// rate, it is refused (nothing of it may be applied).
    pub fn admit(&mut self, frame_len: usize, limits: &Limits, now_ms: u64) -> Result<(), ApiError> {
        self.touch(now_ms);
        if frame_len > limits.max_frame_bytes {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("frame of {frame_len} bytes is over the limit of {} bytes", limits.max_frame_bytes),
            ));
        }
        if !self.bucket.try_take(limits.rate_per_second, limits.rate_burst, now_ms) {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                format!("over the limit of {} operations per second; slow down", limits.rate_per_second),
            ));
        }
        Ok(())
    }

    /// Takes `bytes` from the connection's send budget (refilled at a tenth of it per second);
    /// `false` when it does not have them, and the connection must be closed.
    pub fn spend(&mut self, bytes: usize, limits: &Limits, now_ms: u64) -> bool {
        let burst = limits.send_budget_bytes as f64;
        self.send_budget.try_take_n(bytes as f64, burst / 10.0, burst, now_ms)
    }

    /// Records a refused frame. Returns the close code and reason when the connection has had
    /// too many refusals within the strike window and must be closed.
    pub fn strike(&mut self, code: ErrorCode, limits: &Limits, now_ms: u64) -> Option<(u16, String)> {
        if self.strikes.add(limits.strike_window_ms, now_ms) < limits.max_strikes {
            return None;
        }
        let close = match code {
            ErrorCode::RateLimited => close_code::RATE_LIMITED,
            ErrorCode::TooLarge => close_code::TOO_LARGE,
            _ => close_code::PROTOCOL_ERROR,
        };
        Some((close, format!("too many refused frames ({code:?})")))
    }

    /// The connection was heard from at `at_ms` (a frame, or a heartbeat the runtime answered).
    pub fn touch(&mut self, at_ms: u64) {
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
    }

    /// Whether the connection has been silent for longer than the heartbeat timeout.
    pub fn is_silent(&self, limits: &Limits, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) > limits.heartbeat_timeout_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_checked_for_size_rate_strikes_and_silence() {
        let limits = Limits {
            max_frame_bytes: 10,
            rate_per_second: 1.0,
            rate_burst: 2.0,
            max_strikes: 3,
            heartbeat_timeout_ms: 1_000,
            ..Limits::default()
        };
        let mut admission = Admission::new(&limits, 0);
        assert_eq!(admission.admit(11, &limits, 0).unwrap_err().code, ErrorCode::TooLarge);
        assert!(admission.admit(10, &limits, 0).is_ok());
        assert!(admission.admit(10, &limits, 0).is_ok());
        assert_eq!(admission.admit(1, &limits, 0).unwrap_err().code, ErrorCode::RateLimited);
        assert_eq!(admission.strike(ErrorCode::RateLimited, &limits, 0), None);
        assert_eq!(admission.strike(ErrorCode::RateLimited, &limits, 0), None);
        let (code, _) = admission.strike(ErrorCode::RateLimited, &limits, 0).unwrap();
        assert_eq!(code, close_code::RATE_LIMITED);
        assert!(!admission.is_silent(&limits, 1_000));
        assert!(admission.is_silent(&limits, 1_001));
        admission.touch(900);
        assert!(!admission.is_silent(&limits, 1_500));
    }
}
