//! How long to wait before each reconnect: exponential growth from `backon`, with full jitter.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rand::Rng;

/// The reconnect schedule: delays grow exponentially from `min_delay` by `factor` up to
/// `max_delay` (computed by `backon`), and each actual delay is drawn uniformly from
/// `[0, delay]` ("full jitter"), so clients dropped together do not come back together.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Upper bound of the first delay.
    pub min_delay: Duration,
    /// Upper bound of any delay.
    pub max_delay: Duration,
    /// Growth of the bound per attempt.
    pub factor: f32,
    /// Give up (and close with the last error) after this many failed attempts in a row;
    /// `None` retries forever.
    pub max_attempts: Option<usize>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            factor: 2.0,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// A fresh schedule, for a run of failed attempts that starts now.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + Send {
        let mut builder = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_factor(self.factor.max(1.0));
        builder = match self.max_attempts {
            Some(times) => builder.with_max_times(times),
            None => builder.without_max_times(),
        };
        builder.build().map(full_jitter)
    }
}

fn full_jitter(bound: Duration) -> Duration {
    rand::rng().random_range(Duration::ZERO..=bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_their_bound() {
        let policy = ReconnectPolicy {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(800),
            factor: 2.0,
            max_attempts: Some(6),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 6);
        let bounds = [100, 200, 400, 800, 800, 800];
        for (delay, bound) in delays.iter().zip(bounds) {
            assert!(*delay <= Duration::from_millis(bound), "{delay:?} over {bound} ms");
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let policy = ReconnectPolicy { max_attempts: Some(1), ..ReconnectPolicy::default() };
        let firsts: std::collections::HashSet<Duration> =
            (0..50).filter_map(|_| policy.delays().next()).collect();
        assert!(firsts.len() > 10, "full jitter should give varied delays: {firsts:?}");
    }
}
