//! What activity costs on Cloudflare: the billable units a room's [`Metrics`] amount to, and the
//! one price table, with the free plan's allowances and the paid plan's included amounts and
//! prices. Update [`PRICES`] here when Cloudflare changes them; everything else follows.
//!
//! Sources (checked 2026-11-28): developers.cloudflare.com/durable-objects/platform/pricing,
//! /workers/platform/pricing, /kv/platform/pricing, /d1/platform/pricing, /r2/pricing.
//! Checked again 2026-11-28 for the lines added then:
//! - Workers requests: developers.cloudflare.com/workers/platform/pricing ("Free: 100,000 per
//!   day"; "Standard: 10 million included per month +$0.30 per additional million"; inbound
//!   requests only, subrequests and static assets are free).
//! - Queue operations: developers.cloudflare.com/queues/platform/pricing ("An operation is
//!   counted for each 64 KB of data that is written, read, or deleted", KB = 1,000 bytes, about
//!   100 bytes of metadata per message; "it takes 3 operations to deliver a message"; paid:
//!   1,000,000 operations a month included, $0.40 per million beyond; the Workers Free plan:
//!   10,000 operations a day).
//! - KV reads: developers.cloudflare.com/kv/platform/pricing (free 100,000 a day; paid 10M a
//!   month included, $0.50 per million). The router reads KV for REST reads; no object sees
//!   them, so the service's own figures leave them at 0 and `bench/cost.mjs` counts them.
//! - Durable Object requests include alarm invocations and incoming WebSocket messages (20:1).
//! - R2 class B (reads): developers.cloudflare.com/r2/pricing (free 10 million a month; paid
//!   $0.36 per million beyond). A snapshot reads the previous one back (checked 2026-11-29).

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
    /// R2 class B operations (reads).
    #[serde(default)]
    pub r2_class_b: f64,
    /// Workers requests (router invocations) that reached an object; the cost runner adds the
    /// ones it sends that the router answers alone (KV reads).
    #[serde(default)]
    pub worker_requests: f64,
    /// Queue operations (export).
    #[serde(default)]
    pub queue_ops: f64,
    /// KV reads (REST reads the router answers from the read model; not seen by objects).
    #[serde(default)]
    pub kv_reads: f64,
}

impl Units {
    /// The units `metrics` amount to.
    pub fn of(metrics: &Metrics) -> Self {
        let messages = metrics.frames_in as f64 / WEBSOCKET_MESSAGES_PER_REQUEST as f64;
        // Alarms are billed as requests; metrics saved before alarms were counted had one per flush.
        let alarms = metrics.alarms.max(metrics.flushes_ok + metrics.flushes_failed);
        let requests = (metrics.requests + alarms) as f64;
        let active_s = (requests + metrics.frames_in as f64) * ESTIMATED_ACTIVE_MS_PER_REQUEST / 1000.0;
        Self {
            object_requests: requests + messages,
            duration_gb_s: active_s * BILLED_GB,
            rows_read: metrics.rows_read as f64,
            rows_written: metrics.rows_written as f64,
            kv_writes: metrics.kv_writes as f64,
            d1_rows_written: metrics.d1_rows_written as f64,
            r2_class_a: metrics.r2_writes as f64,
            r2_class_b: metrics.r2_reads as f64,
            worker_requests: metrics.worker_requests as f64,
            queue_ops: metrics.queue_ops as f64,
            kv_reads: 0.0,
        }
    }

    /// The sum of two amounts of units.
    pub fn plus(&self, other: &Units) -> Self {
        let mut sum = *self;
        for unit in Unit::ALL {
            *sum.get_mut(*unit) += other.get(*unit);
        }
        sum
    }

    /// These units scaled by `factor` (per 1,000 deliveries, per day, …).
    pub fn scaled(&self, factor: f64) -> Self {
        let mut scaled = *self;
        for unit in Unit::ALL {
            *scaled.get_mut(*unit) *= factor;
        }
        scaled
    }

    /// The amount of one unit.
    pub fn get(&self, unit: Unit) -> f64 {
        let mut copy = *self;
        *copy.get_mut(unit)
    }

    fn get_mut(&mut self, unit: Unit) -> &mut f64 {
        match unit {
            Unit::WorkerRequests => &mut self.worker_requests,
            Unit::ObjectRequests => &mut self.object_requests,
            Unit::DurationGbS => &mut self.duration_gb_s,
            Unit::RowsRead => &mut self.rows_read,
            Unit::RowsWritten => &mut self.rows_written,
            Unit::KvWrites => &mut self.kv_writes,
            Unit::D1RowsWritten => &mut self.d1_rows_written,
            Unit::R2ClassA => &mut self.r2_class_a,
            Unit::R2ClassB => &mut self.r2_class_b,
            Unit::QueueOps => &mut self.queue_ops,
            Unit::KvReads => &mut self.kv_reads,
        }
    }
}

/// One kind of billable unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Workers requests (router invocations).
    WorkerRequests,
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
    /// KV reads.
    KvReads,
    /// D1 rows written.
    D1RowsWritten,
    /// R2 class A operations.
    R2ClassA,
    /// R2 class B operations.
    R2ClassB,
    /// Queue operations.
    QueueOps,
}

impl Unit {
    /// Every unit, in the order of [`PRICES`].
    pub const ALL: &'static [Unit] = &[
        Unit::WorkerRequests,
        Unit::ObjectRequests,
        Unit::DurationGbS,
        Unit::RowsRead,
        Unit::RowsWritten,
        Unit::KvWrites,
        Unit::KvReads,
        Unit::D1RowsWritten,
        Unit::R2ClassA,
        Unit::R2ClassB,
        Unit::QueueOps,
    ];
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
        unit: Unit::WorkerRequests,
        free_per_day: 100_000.0,
        paid_included_per_month: 10_000_000.0,
        paid_usd_per_million: 0.30,
    },
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
        unit: Unit::KvReads,
        free_per_day: 100_000.0,
        paid_included_per_month: 10_000_000.0,
        paid_usd_per_million: 0.50,
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
    Price {
        unit: Unit::R2ClassB,
        free_per_day: 10_000_000.0 / 30.0,
        paid_included_per_month: 10_000_000.0,
        paid_usd_per_million: 0.36,
    },
    Price {
        unit: Unit::QueueOps,
        free_per_day: 10_000.0,
        paid_included_per_month: 1_000_000.0,
        paid_usd_per_million: 0.40,
    },
];

/// One unit of a monthly estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Line {
    /// The unit.
    pub unit: Unit,
    /// Its price (from [`PRICES`]), so readers compare with the allowance without a copy of
    /// the table.
    pub price: Price,
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
                    price: *price,
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
        // Alarms are requests; older metrics without them count one per flush.
        let alarmed = Metrics { alarms: 5, flushes_ok: 2, ..Metrics::default() };
        assert_eq!(Units::of(&alarmed).object_requests, 5.0);
        let old = Metrics { flushes_ok: 2, flushes_failed: 1, ..Metrics::default() };
        assert_eq!(Units::of(&old).object_requests, 3.0);
    }

    #[test]
    fn every_unit_has_one_price_in_order() {
        let listed: Vec<Unit> = PRICES.iter().map(|price| price.unit).collect();
        assert_eq!(listed, Unit::ALL);
    }

    #[test]
    fn router_requests_and_queue_operations_are_priced() {
        let metrics = Metrics { worker_requests: 4, ..Metrics::default() };
        let mut queued = Metrics::default();
        queued.queued(200);
        let units = Units::of(&metrics).plus(&Units::of(&queued));
        assert_eq!((units.worker_requests, units.queue_ops), (4.0, 3.0));
        // 20,000 messages a day: 60,000 operations, six times the free 10,000; a 30-day month is
        // 1.8M, 0.8M beyond the included million at $0.40 per million.
        let day = Units { queue_ops: 60_000.0, worker_requests: 500_000.0, ..Units::default() };
        let estimate = Estimate::project(&day, 86_400_000);
        let line = |unit| estimate.lines.iter().find(|l: &&Line| l.unit == unit).unwrap();
        assert!((line(Unit::QueueOps).free_share - 6.0).abs() < 1e-9);
        assert!((line(Unit::QueueOps).paid_usd_per_month - 0.32).abs() < 1e-9);
        // 15M Workers requests a month: 5M beyond the included 10M at $0.30 per million.
        assert!((line(Unit::WorkerRequests).free_share - 5.0).abs() < 1e-9);
        assert!((line(Unit::WorkerRequests).paid_usd_per_month - 1.5).abs() < 1e-9);
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
