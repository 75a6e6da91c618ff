//! `load`: the load generator. Subscribers and publishers run in this process, so a message's
//! send time and its delivery time come from the same clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgeroom_client::{OpError, Room, RoomEvent};
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::args::LoadArgs;
use crate::failure::{address, Failure};
use crate::latency::percentiles;
use crate::{out, Link};

/// What each message carries: when it was due, in microseconds since the run started.
#[derive(Serialize, Deserialize)]
struct Stamp {
    t: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pad: String,
}

/// Counts shared by every task.
#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
    rate_limited: AtomicU64,
    lost: AtomicU64,
    delivered: AtomicU64,
    /// Frames the server refused over its rate limit without naming the operation (the client
    /// sent those operations again).
    refused_frames: AtomicU64,
}

/// Counts the refusals a publisher's event stream reports.
async fn count_refusals(mut events: edgeroom_client::RoomEvents, counts: Arc<Counts>) {
    while let Some(event) = events.recv().await {
        match event {
            RoomEvent::Error(edgeroom_client::Error::Server {
                code: edgeroom_client::ErrorCode::RateLimited,
                ..
            }) => {
                counts.refused_frames.fetch_add(1, Ordering::Relaxed);
            }
            RoomEvent::Error(error) => tracing::warn!("publisher: {error}"),
            _ => {}
        }
    }
}

pub async fn run(link: &Link, args: LoadArgs) -> Result<(), Failure> {
    let (tenant, name) = address("room", &args.room)?;
    if args.publishers == 0 || args.rate.is_some_and(|rate| !rate.is_finite() || rate <= 0.0) {
        return Err(Failure::usage("--publishers must be at least 1 and --rate above 0"));
    }
    let options = link
        .room(&tenant, &name)
        .with_pending_limits(usize::MAX, usize::MAX)
        .with_op_ttl(args.duration + args.drain + Duration::from_secs(30));
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let (stop, stopped) = watch::channel(false);
    let (finish, finished) = watch::channel(false);

    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers {
        let (room, events) = Room::connect(options.clone()).await?;
        subscribers.push(tokio::spawn(subscribe(room, events, start, counts.clone(), finished.clone())));
    }
    let mut publishers = Vec::new();
    for _ in 0..args.publishers {
        let (room, events) = Room::connect(options.clone()).await?;
        tokio::spawn(count_refusals(events, counts.clone()));
        let per_publisher = args.rate.map(|rate| rate / args.publishers as f64);
        let task = publish(
            room,
            per_publisher,
            args.window.max(1),
            args.size,
            start,
            counts.clone(),
            stopped.clone(),
        );
        publishers.push(tokio::spawn(task));
    }

    let progress = ProgressBar::with_draw_target(
        Some(args.duration.as_secs().max(1)),
        if args.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() },
    );
    progress.set_style(
        ProgressStyle::with_template("{bar:30} {elapsed}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let publish_start = Instant::now();
    while publish_start.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(250).min(args.duration)).await;
        progress.set_position(publish_start.elapsed().as_secs());
        progress.set_message(format!("{} delivered", counts.delivered.load(Ordering::Relaxed)));
    }
    let _ = stop.send(true);
    let publish_time = publish_start.elapsed();
    let mut acks = histogram();
    for task in publishers {
        if let Ok(histogram) = task.await {
            let _ = acks.add(histogram);
        }
    }
    // Wait for the deliveries of every acknowledged message, up to --drain.
    let expected = counts.acked.load(Ordering::Relaxed) * args.subscribers as u64;
    let drain_until = Instant::now() + args.drain;
    while counts.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.finish_and_clear();
    let _ = finish.send(true);
    let mut latency = histogram();
    for task in subscribers {
        if let Ok(histogram) = task.await {
            let _ = latency.add(histogram);
        }
    }

    let delivered = counts.delivered.load(Ordering::Relaxed);
    let seconds = publish_time.as_secs_f64();
    let report = json!({
        "room": args.room,
        "subscribers": args.subscribers,
        "publishers": args.publishers,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "window": if args.rate.is_some() { None } else { Some(args.window) },
        "duration_s": seconds,
        "sent": counts.sent.load(Ordering::Relaxed),
        "acked": counts.acked.load(Ordering::Relaxed),
        "refused": counts.refused.load(Ordering::Relaxed),
        "rate_limited": counts.rate_limited.load(Ordering::Relaxed),
        "refused_frames": counts.refused_frames.load(Ordering::Relaxed),
        "lost": counts.lost.load(Ordering::Relaxed),
        "delivered": delivered,
        "expected_deliveries": expected,
        "acked_per_s": counts.acked.load(Ordering::Relaxed) as f64 / seconds,
        "delivered_per_s": delivered as f64 / seconds,
        "latency_ms": percentiles(&latency),
        "ack_latency_ms": percentiles(&acks),
    });
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{report:#}\n"))
            .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    }
    if args.json {
        out(report.to_string())?;
    } else {
        print_report(&report)?;
    }
    if delivered < expected {
        return Err(Failure::failed(format!(
            "{} of {expected} deliveries of acknowledged messages did not arrive within --drain",
            expected - delivered
        )));
    }
    Ok(())
}

fn print_report(report: &serde_json::Value) -> Result<(), Failure> {
    out(format!(
        "{} subscribers, {} publishers, {} loop, {:.1} s",
        report["subscribers"],
        report["publishers"],
        report["mode"].as_str().unwrap_or_default(),
        report["duration_s"].as_f64().unwrap_or_default()
    ))?;
    out(format!(
        "sent {}  acked {}  refused {}  rate limited {}  lost {}",
        report["sent"], report["acked"], report["refused"], report["rate_limited"], report["lost"]
    ))?;
    out(format!(
        "delivered {} of {}  ({:.0} events/s delivered, {:.0} messages/s acked)",
        report["delivered"],
        report["expected_deliveries"],
        report["delivered_per_s"].as_f64().unwrap_or_default(),
        report["acked_per_s"].as_f64().unwrap_or_default()
    ))?;
    if report["refused_frames"].as_u64().unwrap_or_default() > 0 {
        out(format!(
            "note: the server refused {} frames over its per-connection rate limit (RATE_LIMIT_PER_SEC); \
             the client sent them again, which shows as latency",
            report["refused_frames"]
        ))?;
    }
    for (label, key) in [("delivery latency", "latency_ms"), ("ack latency", "ack_latency_ms")] {
        let h = &report[key];
        if h["count"].as_u64().unwrap_or_default() == 0 {
            out(format!("{label:>16}: no samples"))?;
            continue;
        }
        out(format!(
            "{label:>16} ms: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            h["p50"], h["p90"], h["p99"], h["p999"], h["max"]
        ))?;
    }
    Ok(())
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn subscribe(
    room: Room,
    mut events: edgeroom_client::RoomEvents,
    start: Instant,
    counts: Arc<Counts>,
    mut finished: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut latency = histogram();
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = finished.changed() => break,
        };
        let Some(event) = event else { break };
        match event {
            RoomEvent::Event(event) => {
                if let Ok(stamp) = event.body.parse::<Stamp>() {
                    let now = micros_since(start);
                    let _ = latency.record(now.saturating_sub(stamp.t));
                    counts.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            RoomEvent::Gap(gap) => {
                tracing::warn!(from = gap.resume_from, to = gap.seq, "a subscriber missed events (gap)")
            }
            RoomEvent::Error(error) => tracing::warn!("subscriber: {error}"),
            _ => {}
        }
    }
    room.close().await;
    latency
}

/// A histogram of microseconds with 3 significant digits.
fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new(3).expect("3 significant digits are within hdrhistogram's range")
}

async fn publish(
    room: Room,
    rate: Option<f64>,
    window: usize,
    size: usize,
    start: Instant,
    counts: Arc<Counts>,
    mut stopped: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut acks = histogram();
    let pad = "x".repeat(size);
    let mut in_flight = FuturesUnordered::new();
    let period = rate.map(|rate| Duration::from_secs_f64(1.0 / rate));
    let mut due = Instant::now();
    loop {
        if *stopped.borrow() {
            break;
        }
        let can_send = match period {
            Some(_) => Instant::now() >= due,
            None => in_flight.len() < window,
        };
        if can_send {
            // Open loop: stamp the scheduled time, so falling behind shows as latency.
            let stamp_at = if period.is_some() { due } else { Instant::now() };
            let stamp = Stamp {
                t: u64::try_from((stamp_at - start).as_micros()).unwrap_or(u64::MAX),
                pad: pad.clone(),
            };
            let operation = room.publish(&stamp);
            counts.sent.fetch_add(1, Ordering::Relaxed);
            in_flight.push(async move { (stamp_at, operation.await) });
            if let Some(period) = period {
                due += period;
            }
            continue;
        }
        let wait_until = match period {
            Some(_) => due,
            None => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            Some((sent_at, outcome)) = in_flight.next() => record(&counts, &mut acks, sent_at, outcome),
            _ = tokio::time::sleep_until(wait_until) => {}
            _ = stopped.changed() => {}
        }
    }
    while let Some((sent_at, outcome)) = in_flight.next().await {
        record(&counts, &mut acks, sent_at, outcome);
    }
    room.close().await;
    acks
}

fn record(counts: &Counts, acks: &mut Histogram<u64>, sent_at: Instant, outcome: Result<u64, OpError>) {
    match outcome {
        Ok(_) => {
            counts.acked.fetch_add(1, Ordering::Relaxed);
            let _ = acks.record(u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX));
        }
        Err(OpError::RateLimited { .. }) => {
            counts.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        Err(OpError::Refused { .. }) => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => {
            tracing::warn!("{error}");
            counts.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}
