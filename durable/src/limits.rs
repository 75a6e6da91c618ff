//! Tunable limits of a room, with defaults that suit the platform's limits.

/// Limits a room enforces on what clients send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted from a client, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
        }
    }
}
