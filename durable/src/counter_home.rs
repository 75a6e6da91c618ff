//! How the shards of one counter work together: where a write goes (so that a retry finds the
//! shard that applied it, whatever the shard count did in between), which shard counts are
//! allowed, how a reset reaches every shard, and how the home shard merges the other shards'
//! reports into the value its live subscribers see.

use std::collections::BTreeMap;

use edgeroom_protocol::{CounterOp, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::{sum_shards, ApiError, CounterState, ShardWrite};
use edgeroom_protocol::CounterWriteResult;

/// Most shards a counter may have.
pub const MAX_SHARDS: u32 = 64;

/// How long a shard-count change makes writes look for their op id on the shard they would
/// have gone to before it. Ops retried later than this after a change may apply twice (the
/// documented idempotency window of sharded counters).
pub const RESHARD_LOOKBACK_MS: u64 = 24 * 60 * 60 * 1000;

/// One shard count the counter has had, from `since_ms` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCount {
    /// Number of shards.
    pub shards: u32,
    /// When the counter started using it, in milliseconds since the Unix epoch.
    pub since_ms: u64,
}

/// Every shard count a counter has had, oldest first (counts only grow).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardHistory(pub Vec<ShardCount>);

impl Default for ShardHistory {
    fn default() -> Self {
        Self(vec![ShardCount { shards: 1, since_ms: 0 }])
    }
}

/// Where one write goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRoute {
    /// The shard that applies it.
    pub shard: u32,
    /// Shards that may already have applied the same op id under an earlier shard count; ask
    /// them first.
    pub also_check: Vec<u32>,
}

impl ShardHistory {
    /// The current number of shards.
    pub fn current(&self) -> u32 {
        self.0.last().map_or(1, |count| count.shards)
    }

    /// Whether the counter may move to `requested` shards: counts grow from the current one up
    /// to [`MAX_SHARDS`], never shrink (a shard's value would be stranded).
    pub fn check_change(&self, requested: u32) -> Result<(), ApiError> {
        let current = self.current();
        if requested == 0 || requested > MAX_SHARDS {
            return Err(ApiError::bad_request(format!("shards must be 1 to {MAX_SHARDS}, not {requested}")));
        }
        if requested < current {
            return Err(ApiError::new(
                ErrorCode::LimitExceeded,
                format!("shards can grow from {current} up to {MAX_SHARDS}, never shrink"),
            ));
        }
        Ok(())
    }

    /// Moves to `shards` shards at `now_ms` (after [`ShardHistory::check_change`]).
    pub fn grow(&mut self, shards: u32, now_ms: u64) {
        if shards != self.current() {
            self.0.push(ShardCount { shards, since_ms: now_ms });
        }
    }

    /// Where a write with `op_id` goes at `now_ms`: a consistent hash of the op id over the
    /// current count (growing only moves ops to new shards), plus the shards it mapped to under
    /// the counts that ended within [`RESHARD_LOOKBACK_MS`].
    pub fn route(&self, op_id: &str, now_ms: u64) -> WriteRoute {
        let shard = shard_for(op_id, self.current());
        let mut also_check = Vec::new();
        for pair in self.0.windows(2) {
            let [earlier, next] = pair else { continue };
            if now_ms.saturating_sub(next.since_ms) > RESHARD_LOOKBACK_MS {
                continue;
            }
            let before = shard_for(op_id, earlier.shards);
            if before != shard && !also_check.contains(&before) {
                also_check.push(before);
            }
        }
        WriteRoute { shard, also_check }
    }
}

/// The shard an op id maps to among `shards`: Lamping and Veach's jump consistent hash of a
/// stable FNV-1a hash of the id. When the count grows, an op either stays or moves to a new shard.
pub fn shard_for(op_id: &str, shards: u32) -> u32 {
    let mut key = op_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let (mut bucket, mut next) = (0i64, 0i64);
    let buckets = i64::from(shards.max(1));
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = (((bucket + 1) as f64) * ((1u64 << 31) as f64 / (((key >> 33) + 1) as f64))) as i64;
    }
    u32::try_from(bucket).unwrap_or(0)
}

/// The writes that reset the other shards (1..shards) for a reset with `op_id`; each gets a
/// derived op id so a retried reset is applied once on every shard too.
pub fn reset_plan(op_id: &str, shards: u32) -> Vec<(u32, ShardWrite)> {
    (1..shards)
        .map(|shard| (shard, ShardWrite { op_id: format!("{op_id}/{shard}"), op: CounterOp::Reset }))
        .collect()
}

/// The shards of one counter as a writer reaches them (other objects, or this one).
#[allow(async_fn_in_trait)] // used with concrete types only, on one thread
pub trait ShardClient {
    /// What `shard` remembers of `op_id`, if it applied it.
    async fn seen(&self, shard: u32, op_id: &str) -> Result<Option<CounterWriteResult>, ApiError>;
    /// Applies `write` on `shard` (once per op id there).
    async fn write(&self, shard: u32, write: &ShardWrite) -> Result<CounterWriteResult, ApiError>;
}

/// Applies a write once across the counter's shards: a shard that took the same op id under an
/// earlier shard count answers for it; otherwise the routed shard applies it.
pub async fn routed_write(
    shards: &impl ShardClient,
    history: &ShardHistory,
    write: &ShardWrite,
    now_ms: u64,
) -> Result<CounterWriteResult, ApiError> {
    let route = history.route(&write.op_id, now_ms);
    for earlier in route.also_check {
        if let Some(result) = shards.seen(earlier, &write.op_id).await? {
            return Ok(result);
        }
    }
    shards.write(route.shard, write).await
}

/// What the home shard knows of the other shards, for its live subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardViews(BTreeMap<u32, CounterState>);

impl ShardViews {
    /// Takes a shard's report; reports may arrive out of order, so only a newer version counts.
    /// Returns whether it changed what the home knows.
    pub fn merge(&mut self, shard: u32, state: CounterState) -> bool {
        match self.0.get(&shard) {
            Some(known) if state.version <= known.version => false,
            _ => {
                self.0.insert(shard, state);
                true
            }
        }
    }

    /// The other shards (1..shards) the home has never heard of, to fetch before summing.
    pub fn unknown(&self, shards: u32) -> Vec<u32> {
        (1..shards).filter(|shard| !self.0.contains_key(shard)).collect()
    }

    /// The counter's value: the home's state plus every other known shard (`None` on overflow).
    pub fn sum(&self, home: CounterState, shards: u32) -> Option<CounterState> {
        let mut states = vec![home];
        states.extend((1..shards).filter_map(|shard| self.0.get(&shard).copied()));
        sum_shards(&states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Shards as plain maps of applied op ids, to drive [`routed_write`] through a reshard.
    #[derive(Default)]
    struct MapShards(RefCell<BTreeMap<u32, BTreeMap<String, u64>>>);

    impl ShardClient for MapShards {
        async fn seen(&self, shard: u32, op_id: &str) -> Result<Option<CounterWriteResult>, ApiError> {
            let shards = self.0.borrow();
            let version = shards.get(&shard).and_then(|ops| ops.get(op_id)).copied();
            Ok(version.map(|version| CounterWriteResult { shard, value: 1, version }))
        }

        async fn write(&self, shard: u32, write: &ShardWrite) -> Result<CounterWriteResult, ApiError> {
            let mut shards = self.0.borrow_mut();
            let ops = shards.entry(shard).or_default();
            let next = ops.len() as u64 + 1;
            let version = *ops.entry(write.op_id.clone()).or_insert(next);
            Ok(CounterWriteResult { shard, value: 1, version })
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        // The futures here never wait on anything, so one poll finishes them.
        let mut future = std::pin::pin!(future);
        let waker = std::task::Waker::noop();
        match future.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("a test shard client never waits"),
        }
    }

    #[test]
    fn a_retry_after_a_reshard_is_answered_by_the_shard_that_applied_it() {
        let shards = MapShards::default();
        let mut history = ShardHistory::default();
        let writes: Vec<ShardWrite> =
            (0..50).map(|i| ShardWrite { op_id: format!("op-{i}"), op: CounterOp::Add(1) }).collect();
        for write in &writes {
            block_on(routed_write(&shards, &history, write, 0)).unwrap();
        }
        history.grow(8, 10);
        for write in &writes {
            let retried = block_on(routed_write(&shards, &history, write, 20)).unwrap();
            assert_eq!(retried.shard, 0, "{} was answered by shard 0, where it first applied", write.op_id);
        }
        let applied: usize = shards.0.borrow().values().map(BTreeMap::len).sum();
        assert_eq!(applied, 50, "no op applied twice");
    }

    #[test]
    fn shard_counts_only_grow_within_bounds() {
        let mut history = ShardHistory::default();
        assert_eq!(history.current(), 1);
        assert_eq!(history.check_change(0).unwrap_err().code, ErrorCode::BadRequest);
        assert_eq!(history.check_change(65).unwrap_err().code, ErrorCode::BadRequest);
        assert!(history.check_change(4).is_ok());
        history.grow(4, 10);
        assert_eq!(history.check_change(2).unwrap_err().code, ErrorCode::LimitExceeded);
        assert!(history.check_change(4).is_ok(), "the same count is a no-op");
        history.grow(4, 20);
        assert_eq!(history.0.len(), 2);
    }

    #[test]
    fn growing_moves_ops_only_to_new_shards_and_routes_remember_the_old_place() {
        let ops: Vec<String> = (0..2_000).map(|i| format!("op-{i}")).collect();
        let spread: std::collections::BTreeSet<u32> = ops.iter().map(|op| shard_for(op, 8)).collect();
        assert_eq!(spread.len(), 8, "ops spread over every shard");
        for op in &ops {
            let (before, after) = (shard_for(op, 4), shard_for(op, 8));
            assert!(after == before || after >= 4, "{op} moved from {before} to old shard {after}");
        }
        let mut history = ShardHistory::default();
        history.grow(4, 1_000);
        history.grow(8, 2_000);
        let moved = ops.iter().find(|op| shard_for(op, 8) != shard_for(op, 4)).unwrap();
        let route = history.route(moved, 3_000);
        assert_eq!(route.shard, shard_for(moved, 8));
        assert!(route.also_check.contains(&shard_for(moved, 4)));
        assert!(!route.also_check.contains(&route.shard));
        let stayed =
            ops.iter().find(|op| shard_for(op, 8) == shard_for(op, 4) && shard_for(op, 1) == 0).unwrap();
        assert!(history.route(stayed, 3_000).also_check.iter().all(|s| *s == 0));
        // Long after the changes, writes no longer look back.
        assert!(history.route(moved, 2_000 + RESHARD_LOOKBACK_MS + 1).also_check.is_empty());
    }

    #[test]
    fn resets_reach_every_other_shard_once() {
        let plan = reset_plan("r1", 3);
        assert_eq!(
            plan.iter().map(|(s, w)| (*s, w.op_id.as_str())).collect::<Vec<_>>(),
            vec![(1, "r1/1"), (2, "r1/2")]
        );
        assert!(reset_plan("r1", 1).is_empty());
    }

    #[test]
    fn reports_merge_by_version_and_sum_with_the_home() {
        let mut views = ShardViews::default();
        assert_eq!(views.unknown(3), vec![1, 2]);
        assert!(views.merge(1, CounterState { value: 5, version: 2 }));
        assert!(!views.merge(1, CounterState { value: 3, version: 1 }), "an older report is ignored");
        assert!(views.merge(2, CounterState { value: -1, version: 1 }));
        assert!(views.unknown(3).is_empty());
        let home = CounterState { value: 10, version: 4 };
        assert_eq!(views.sum(home, 3), Some(CounterState { value: 14, version: 7 }));
        views.merge(2, CounterState { value: i64::MAX, version: 9 });
        assert_eq!(views.sum(home, 3), None);
    }
}
