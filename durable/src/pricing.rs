//! What activity costs on Cloudflare: the billable units a room's [`Metrics`] amount to, and the
//! one price table, with the free plan's allowances and the paid plan's included amounts and
//! prices. Update [`PRICES`] here when Cloudflare changes them; everything else follows.
//!
//! Sources (checked 2026-11-28): developers.cloudflare.com/durable-objects/platform/pricing,
//! /workers/platform/pricing, /kv/platform/pricing, /d1/platform/pricing, /r2/pricing.

use serde::{Deserialize, Serialize};

use crate::Metrics;

/// Incoming WebSocket messages are billed as Durable Object requests at this ratio.
pub const WEBSOCKET_MESSAGES_PER_REQUEST: u64 = 20;

/// Wall time one request or message keeps an object active, for the duration estimate (the
/// runtime does not report it; hibernated sockets cost nothing).
pub const ESTIMATED_ACTIVE_MS_PER_REQUEST: f64 = 5.0;

/// Memory billed per active object, in GB (Durable Objects bill 128 MB).
const BILLED_GB: f64 = 0.128;

/// Billable units of some activity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Units {
    /// Durable Object requests, WebSocket messages counted at 20:1.
    pub object_requests: f64,
    /// Estimated Durable Object duration, GB-s.
    pub duration_gb_s: f64,
    /// Rows read by object SQLite storage.
    pub rows_read: f64,
    /// Rows written by object SQLite storage.
    pub rows_written: f64,
    /// KV writes.
    pub kv_writes: f64,
    /// D1 rows written.
    pub d1_rows_written: f64,
    /// R2 class A operations (writes).
    pub r2_class_a: f64,
}

impl Units {
    /// The units `metrics` amount to.
    pub fn of(metrics: &Metrics) -> Self {
        let messages = metrics.frames_in as f64 / WEBSOCKET_MESSAGES_PER_REQUEST as f64;
        let requests = metrics.requests as f64 + metrics.flushes_ok as f64 + metrics.flushes_failed as f64;
        let active_s = (requests + metrics.frames_in as f64) * ESTIMATED_ACTIVE_MS_PER_REQUEST / 1000.0;
        Self {
            object_requests: requests + messages,
            duration_gb_s: active_s * BILLED_GB,
            rows_read: metrics.rows_read as f64,
            rows_written: metrics.rows_written as f64,
            kv_writes: metrics.kv_writes as f64,
            d1_rows_written: metrics.d1_rows_written as f64,
            r2_class_a: metrics.r2_writes as f64,
        }
    }

    /// These units scaled by `factor` (per 1,000 deliveries, per day, …).
    pub fn scaled(&self, factor: f64) -> Self {
        Self {
            object_requests: self.object_requests * factor,
            duration_gb_s: self.duration_gb_s * factor,
            rows_read: self.rows_read * factor,
            rows_written: self.rows_written * factor,
            kv_writes: self.kv_writes * factor,
            d1_rows_written: self.d1_rows_written * factor,
            r2_class_a: self.r2_class_a * factor,
        }
    }

    fn get(&self, unit: Unit) -> f64 {
        match unit {
            Unit::ObjectRequests => self.object_requests,
            Unit::DurationGbS => self.duration_gb_s,
            Unit::RowsRead => self.rows_read,
            Unit::RowsWritten => self.rows_written,
            Unit::KvWrites => self.kv_writes,
            Unit::D1RowsWritten => self.d1_rows_written,
            Unit::R2ClassA => self.r2_class_a,
        }
    }
}

/// One kind of billable unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Durable Object requests (incl. WebSocket messages at 20:1).
    ObjectRequests,
    /// Durable Object duration.
    DurationGbS,
    /// SQLite rows read.
    RowsRead,
    /// SQLite rows written.
    RowsWritten,
    /// KV writes.
    KvWrites,
    /// D1 rows written.
    D1RowsWritten,
    /// R2 class A operations.
    R2ClassA,
}

/// The price of one unit on both plans.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    /// The unit.
    pub unit: Unit,
    /// Free plan allowance per day (requests beyond it fail).
    pub free_per_day: f64,
    /// Paid plan: amount included per month.
    pub paid_included_per_month: f64,
    /// Paid plan: US dollars per million units beyond the included amount.
    pub paid_usd_per_million: f64,
}

/// The price table. R2's free allowance is monthly (1M class A); it is shown per day here.
pub const PRICES: &[Price] = &[
    Price {
        unit: Unit::ObjectRequests,
        free_per_day: 100_000.0,
        paid_included_per_month: 1_000_000.0,
        paid_usd_per_million: 0.15,
    },
    Price {
        unit: Unit::DurationGbS,
        free_per_day: 13_000.0,
        paid_included_per_month: 400_000.0,
        paid_usd_per_million: 12.50,
    },
    Price {
        unit: Unit::RowsRead,
        free_per_day: 5_000_000.0,
        paid_included_per_month: 25_000_000_000.0,
        paid_usd_per_million: 0.001,
    },
    Price {
        unit: Unit::RowsWritten,
        free_per_day: 100_000.0,
        paid_included_per_month: 50_000_000.0,
        paid_usd_per_million: 1.00,
    },
    Price {
        unit: Unit::KvWrites,
        free_per_day: 1_000.0,
        paid_included_per_month: 1_000_000.0,
        paid_usd_per_million: 5.00,
    },
    Price {
        unit: Unit::D1RowsWritten,
        free_per_day: 100_000.0,
        paid_included_per_month: 50_000_000.0,
        paid_usd_per_million: 1.00,
    },
    Price {
        unit: Unit::R2ClassA,
        free_per_day: 1_000_000.0 / 30.0,
        paid_included_per_month: 1_000_000.0,
        paid_usd_per_million: 4.50,
    },
];

/// One unit of a monthly estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Line {
    /// The unit.
    pub unit: Unit,
    /// Units per day at the measured rate.
    pub per_day: f64,
    /// Share of the free plan's daily allowance (1.0 = all of it).
    pub free_share: f64,
    /// Paid plan cost per month beyond the included amount, US dollars (alone, as if nothing
    /// else in the account used the included amount).
    pub paid_usd_per_month: f64,
}

/// What a rate of activity costs: `units` measured over `window_ms`, projected to a day and a
/// 30-day month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// One line per unit.
    pub lines: Vec<Line>,
    /// Whether every unit fits the free plan's daily allowance.
    pub fits_free_plan: bool,
    /// The paid plan's monthly cost beyond the included amounts, US dollars.
    pub paid_usd_per_month: f64,
}

impl Estimate {
    /// Projects `units` measured over `window_ms` milliseconds.
    pub fn project(units: &Units, window_ms: u64) -> Self {
        let per_day_factor = 86_400_000.0 / (window_ms.max(1) as f64);
        let daily = units.scaled(per_day_factor);
        let lines: Vec<Line> = PRICES
            .iter()
            .map(|price| {
                let per_day = daily.get(price.unit);
                let monthly = per_day * 30.0;
                let billable = (monthly - price.paid_included_per_month).max(0.0);
                Line {
                    unit: price.unit,
                    per_day,
                    free_share: per_day / price.free_per_day,
                    paid_usd_per_month: billable / 1_000_000.0 * price.paid_usd_per_million,
                }
            })
            .collect();
        Self {
            fits_free_plan: lines.iter().all(|line| line.free_share <= 1.0),
            paid_usd_per_month: lines.iter().map(|line| line.paid_usd_per_month).sum(),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_messages_count_at_twenty_to_one() {
        let metrics =
            Metrics { requests: 3, frames_in: 200, rows_written: 7, kv_writes: 1, ..Metrics::default() };
        let units = Units::of(&metrics);
        assert_eq!(units.object_requests, 13.0);
        assert_eq!((units.rows_written, units.kv_writes), (7.0, 1.0));
        assert!((units.duration_gb_s - 203.0 * 0.005 * 0.128).abs() < 1e-9);
        assert_eq!(units.scaled(2.0).object_requests, 26.0);
    }

    #[test]
    fn estimates_compare_a_day_with_the_free_plan_and_price_the_paid_one() {
        // One KV write per second for an hour: 86,400 a day, far over the free 1,000.
        let units = Units { kv_writes: 3_600.0, ..Units::default() };
        let estimate = Estimate::project(&units, 3_600_000);
        let kv = estimate.lines.iter().find(|l| l.unit == Unit::KvWrites).unwrap();
        assert_eq!(kv.per_day, 86_400.0);
        assert!((kv.free_share - 86.4).abs() < 1e-9);
        assert!(!estimate.fits_free_plan);
        // 2,592,000 a month, 1,592,000 beyond the included million, at $5 per million.
        assert!((kv.paid_usd_per_month - 7.96).abs() < 1e-9);
        let idle = Estimate::project(&Units::default(), 1_000);
        assert!(idle.fits_free_plan);
        assert_eq!(idle.paid_usd_per_month, 0.0);
    }
}
