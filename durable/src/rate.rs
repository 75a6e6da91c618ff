//! Per-connection rate limiting: a token bucket, and a strike counter for repeated abuse.

/// A token bucket: `burst` tokens, refilled at `per_second`; each operation takes one.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn full(burst: f64, now_ms: u64) -> Self {
        Self { tokens: burst, last_ms: now_ms }
    }

    /// Takes one token if there is one; `false` means the operation is over the rate.
    pub fn try_take(&mut self, per_second: f64, burst: f64, now_ms: u64) -> bool {
        self.try_take_n(1.0, per_second, burst, now_ms)
    }

    /// Takes `n` tokens if there are that many.
    pub fn try_take_n(&mut self, n: f64, per_second: f64, burst: f64, now_ms: u64) -> bool {
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed_ms as f64 * per_second / 1000.0).min(burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Counts refused frames within a time window, to close connections that keep misbehaving.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strikes {
    count: u32,
    window_start_ms: u64,
}

impl Strikes {
    /// Records one refused frame; returns the number of strikes in the current window.
    pub fn add(&mut self, window_ms: u64, now_ms: u64) -> u32 {
        if now_ms.saturating_sub(self.window_start_ms) > window_ms {
            self.count = 0;
            self.window_start_ms = now_ms;
        }
        self.count = self.count.saturating_add(1);
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let mut bucket = TokenBucket::full(3.0, 0);
        assert!((0..3).all(|_| bucket.try_take(10.0, 3.0, 0)));
        assert!(!bucket.try_take(10.0, 3.0, 0));
        // 10 per second: one token every 100 ms.
        assert!(!bucket.try_take(10.0, 3.0, 50));
        assert!(bucket.try_take(10.0, 3.0, 100));
        // Refill never exceeds the burst.
        assert_eq!((0..10).filter(|_| bucket.try_take(10.0, 3.0, 100_000)).count(), 3);
    }

    #[test]
    fn strikes_reset_after_the_window() {
        let mut strikes = Strikes::default();
        assert_eq!(strikes.add(1000, 0), 1);
        assert_eq!(strikes.add(1000, 500), 2);
        assert_eq!(strikes.add(1000, 2000), 1);
    }
}
