//! The operations a room applied recently, so a retried operation (same op id) is answered
//! with its original seq instead of being applied twice.
//!
//! Kept in memory and loaded from history on first use after the object wakes: an index on op
//! ids in storage would cost one more billed row written per event.

use std::collections::{HashMap, VecDeque};

/// Most operations remembered, whatever their age (bounds memory: ~100 bytes each).
pub const MAX_RECENT_OPS: usize = 10_000;

/// Op ids of recent events and their seqs, oldest first.
#[derive(Debug, Default)]
pub struct RecentOps {
    by_id: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    window_ms: u64,
}

impl RecentOps {
    /// Remembers operations of the last `window_ms`, from `newest_first` (as history lists them).
    pub fn load(window_ms: u64, newest_first: Vec<(String, u64, u64)>) -> Self {
        let mut ops = Self { window_ms, ..Self::default() };
        for (op_id, seq, at_ms) in newest_first.into_iter().take(MAX_RECENT_OPS).rev() {
            ops.insert(op_id, seq, at_ms);
        }
        ops
    }

    /// The seq an operation produced, if it is recent.
    pub fn get(&self, op_id: &str) -> Option<u64> {
        self.by_id.get(op_id).copied()
    }

    /// Records an applied operation and forgets the ones that left the window.
    pub fn insert(&mut self, op_id: String, seq: u64, at_ms: u64) {
        self.by_id.insert(op_id.clone(), seq);
        self.order.push_back((at_ms, op_id));
        let oldest_kept = at_ms.saturating_sub(self.window_ms);
        while self.order.len() > MAX_RECENT_OPS || self.order.front().is_some_and(|(at, _)| *at < oldest_kept)
        {
            if let Some((_, op_id)) = self.order.pop_front() {
                self.by_id.remove(&op_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_ops_and_forgets_old_ones() {
        let loaded = vec![("c".to_owned(), 3, 3_000), ("b".to_owned(), 2, 2_000), ("a".to_owned(), 1, 1_000)];
        let mut ops = RecentOps::load(10_000, loaded);
        assert_eq!(ops.get("a"), Some(1));
        assert_eq!(ops.get("c"), Some(3));
        ops.insert("d".to_owned(), 4, 11_500);
        assert_eq!(ops.get("a"), None, "older than the window");
        assert_eq!(ops.get("b"), Some(2));
        assert_eq!(ops.get("d"), Some(4));
    }

    #[test]
    fn memory_is_bounded() {
        let mut ops = RecentOps::load(u64::MAX, Vec::new());
        for i in 0..(MAX_RECENT_OPS as u64 + 10) {
            ops.insert(format!("op-{i}"), i, 0);
        }
        assert_eq!(ops.get("op-0"), None);
        assert!(ops.get(&format!("op-{}", MAX_RECENT_OPS + 9)).is_some());
        assert_eq!(ops.by_id.len(), MAX_RECENT_OPS);
    }
}
