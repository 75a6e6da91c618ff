//! `bench`: the wire-level load generator of `bench/` (the benchmark against the partyserver
//! peer). Unlike `load`, which drives edgeroom through the SDK, it opens plain WebSockets and
//! speaks JSON text frames, so the same code (connections, scheduling, clocks, histograms) drives
//! both targets and only the frame codec differs:
//!
//! - `edgeroom`: `/v1/t/{tenant}/rooms/{room}/ws?format=json`, the JSON form of docs/protocol.md;
//!   a publish is acknowledged by its `ack`.
//! - `partyserver`: `/parties/{party}/{room}` of `bench/peer/` (see its `src/index.js`); a publish
//!   is acknowledged by the sender's own copy of the broadcast event.
//!
//! Every time comes from one clock in this process: a message carries its scheduled send time
//! (open loop) and each subscriber records receive time minus that. The command prints one JSON
//! object, including the CPU this process used (`/proc/self/stat`) so the report can show the
//! generator is not the bottleneck.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::failure::Failure;
use crate::latency::percentiles;
use crate::{out, Link};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Writer = SplitSink<Socket, Message>;
type Reader = SplitStream<Socket>;

/// `edgeroom bench …`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which server speaks at `--url`.
    #[arg(long, value_enum, default_value_t = Target::Edgeroom)]
    pub target: Target,
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    Edgeroom,
    Partyserver,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Subscribers and publishers in one or more rooms, through a list of load steps.
    Pubsub {
        /// `tenant/room` (edgeroom) or `party/room` (partyserver); with `--rooms N`, rooms
        /// `room-0` … `room-{N-1}`.
        room: String,
        /// Rooms.
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        /// Subscribers per room.
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        /// Publishers per room.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Steps, comma-separated: `rate:R` (open loop, R messages/s over all publishers) or
        /// `window:W` (closed loop, W messages in flight per publisher).
        #[arg(long, default_value = "rate:100")]
        steps: String,
        /// Publishing time per step.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        step_duration: Duration,
        /// Longest wait for a step's last deliveries.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        drain: Duration,
        /// Padding bytes per message body.
        #[arg(long, default_value_t = 0)]
        size: usize,
        /// Handshakes in flight while connecting.
        #[arg(long, default_value_t = 64)]
        connect_concurrency: usize,
    },
    /// N clients join one room at once; each waits until it knows all N members.
    Join {
        room: String,
        #[arg(long, default_value_t = 500)]
        clients: usize,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Fill a room with `--missed` events, then `--clients` clients resume from before them at once.
    Resume {
        room: String,
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        missed: u64,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Publish `--events` messages into one room as fast as a closed loop goes (no subscribers).
    Fill {
        room: String,
        #[arg(long)]
        events: u64,
        #[arg(long, default_value_t = 50)]
        window: usize,
        #[arg(long, default_value_t = 0)]
        size: usize,
    },
    /// Connect to `--count` new rooms one after another; time to the first frame (the welcome).
    Connect {
        room: String,
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
    /// Counter adds over REST (edgeroom only), closed loop with `--concurrency` requests in flight.
    Counter {
        /// `tenant/name`
        counter: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Shards to set before the run (1: unsharded).
        #[arg(long, default_value_t = 1)]
        shards: u32,
    },
}

pub async fn run(link: &Link, args: BenchArgs) -> Result<(), Failure> {
    let target = args.target;
    let ws_base = link.url.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let ws_base = ws_base.trim_end_matches('/').to_owned();
    let cpu_start = cpu_seconds();
    let mut report = match args.scenario {
        Scenario::Pubsub {
            room,
            rooms,
            subscribers,
            publishers,
            steps,
            step_duration,
            drain,
            size,
            connect_concurrency,
        } => {
            let steps = parse_steps(&steps)?;
            let plan =
                Plan { rooms, subscribers, publishers: publishers.max(1), steps, step_duration, drain, size };
            let (scope, name) = split(&room)?;
            pubsub(target, &ws_base, &scope, &name, plan, connect_concurrency.max(1)).await?
        }
        Scenario::Join { room, clients, timeout } => {
            let (scope, name) = split(&room)?;
            join(target, &room_url(target, &ws_base, &scope, &name, None), clients, timeout).await?
        }
        Scenario::Resume { room, clients, missed, timeout } => {
            let (scope, name) = split(&room)?;
            resume(target, &ws_base, &scope, &name, clients, missed, timeout).await?
        }
        Scenario::Fill { room, events, window, size } => {
            let (scope, name) = split(&room)?;
            let url = room_url(target, &ws_base, &scope, &name, None);
            let started = Instant::now();
            let (first, last) = fill(target, &url, events, window.max(1), size).await?;
            json!({ "events": events, "first_seq": first, "last_seq": last, "seconds": started.elapsed().as_secs_f64() })
        }
        Scenario::Connect { room, count } => {
            let (scope, name) = split(&room)?;
            connect_new(target, &ws_base, &scope, &name, count).await?
        }
        Scenario::Counter { counter, concurrency, duration, shards } => {
            if target != Target::Edgeroom {
                return Err(Failure::usage("the counter scenario is edgeroom's only"));
            }
            let (tenant, name) = split(&counter)?;
            counter_adds(&link.url, &tenant, &name, concurrency.max(1), duration, shards).await?
        }
    };
    report["target"] = json!(match target {
        Target::Edgeroom => "edgeroom",
        Target::Partyserver => "partyserver",
    });
    report["generator_cpu_s"] = json!(cpu_seconds() - cpu_start);
    out(report.to_string())
}

fn split(address: &str) -> Result<(String, String), Failure> {
    match address.split_once('/') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_owned(), b.to_owned())),
        _ => Err(Failure::usage(format!("{address}: expected scope/name"))),
    }
}

fn room_url(target: Target, base: &str, scope: &str, room: &str, after: Option<u64>) -> String {
    match target {
        Target::Edgeroom => {
            let resume = after.map(|seq| format!("&resume_from={seq}")).unwrap_or_default();
            format!("{base}/v1/t/{scope}/rooms/{room}/ws?format=json{resume}")
        }
        Target::Partyserver => {
            let resume = after.map(|seq| format!("?after={seq}")).unwrap_or_default();
            format!("{base}/parties/{scope}/{room}{resume}")
        }
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (Linux).
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which is in parentheses and may contain spaces).
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

// ---------------------------------------------------------------------------------------------
// Frames

/// What a message body carries: its scheduled send time (µs since the run started) and its step.
#[derive(Deserialize)]
struct Stamp {
    t: u64,
    #[serde(default)]
    s: usize,
}

#[derive(Deserialize)]
struct EventIn {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    body: Option<Stamp>,
}

/// A member as either target names it (edgeroom: `connection_id`, partyserver: `id`).
#[derive(Deserialize)]
struct MemberIn {
    #[serde(default)]
    connection_id: Option<Value>,
    #[serde(default)]
    id: Option<Value>,
}

impl MemberIn {
    fn key(&self) -> String {
        self.connection_id.as_ref().or(self.id.as_ref()).map(Value::to_string).unwrap_or_default()
    }
}

/// Every frame of both targets, read into one shape (unknown fields are skipped).
#[derive(Deserialize)]
struct FrameIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    body: Option<Stamp>,
    #[serde(default)]
    events: Option<Vec<EventIn>>,
    #[serde(default)]
    op_id: Option<String>,
    #[serde(default)]
    members: Option<Vec<MemberIn>>,
    #[serde(default)]
    joined: Option<Vec<MemberIn>>,
    #[serde(default)]
    member: Option<MemberIn>,
    #[serde(default)]
    left: Option<Vec<Value>>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

fn parse(message: &Message) -> Option<FrameIn> {
    match message {
        Message::Text(text) => serde_json::from_str(text.as_str()).ok(),
        _ => None,
    }
}

fn publish_frame(op_id: &str, stamp_t: u64, step: usize, pad: &str) -> String {
    // The same frame for both targets.
    if pad.is_empty() {
        format!(r#"{{"type":"publish","op_id":"{op_id}","body":{{"t":{stamp_t},"s":{step}}}}}"#)
    } else {
        format!(r#"{{"type":"publish","op_id":"{op_id}","body":{{"t":{stamp_t},"s":{step},"p":"{pad}"}}}}"#)
    }
}

/// Whether a frame acknowledges our publish `op_id` (edgeroom: `ack`; partyserver: our own event).
fn ack_of(target: Target, frame: &FrameIn) -> Option<(&str, u64)> {
    let is_ack = match target {
        Target::Edgeroom => frame.kind == "ack",
        Target::Partyserver => frame.kind == "event",
    };
    if !is_ack {
        return None;
    }
    Some((frame.op_id.as_deref()?, frame.seq.unwrap_or_default()))
}

/// The events of a frame as (seq, stamp).
fn events_of(frame: &FrameIn, mut each: impl FnMut(u64, Option<&Stamp>)) {
    match frame.kind.as_str() {
        "event" => each(frame.seq.unwrap_or_default(), frame.body.as_ref()),
        "events" | "history" => {
            for event in frame.events.iter().flatten() {
                each(event.seq, event.body.as_ref());
            }
        }
        _ => {}
    }
}

async fn open(url: &str) -> Result<(Writer, Reader, FrameIn), Failure> {
    let mut attempt = 0;
    let socket = loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => break socket,
            Err(error) if attempt < 5 => {
                attempt += 1;
                tracing::warn!("connecting to {url}: {error}; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(error) => return Err(Failure::failed(format!("connecting to {url}: {error}"))),
        }
    };
    let (writer, mut reader) = socket.split();
    // The first frame is the welcome on both targets.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, reader.next()).await;
        match next {
            Ok(Some(Ok(message))) => {
                if let Some(frame) = parse(&message) {
                    if frame.kind == "welcome" {
                        return Ok((writer, reader, frame));
                    }
                    if frame.kind == "error" {
                        return Err(Failure::failed(format!(
                            "{url}: error before welcome: {:?} {:?}",
                            frame.code, frame.message
                        )));
                    }
                }
            }
            Ok(Some(Err(error))) => return Err(Failure::failed(format!("{url}: {error}"))),
            Ok(None) => return Err(Failure::failed(format!("{url}: closed before the welcome"))),
            Err(_) => return Err(Failure::failed(format!("{url}: no welcome within 30 s"))),
        }
    }
}

fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)]
    Histogram::new(3).expect("3 significant digits are within hdrhistogram's range")
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// pubsub

#[derive(Debug, Clone, Copy)]
enum Step {
    Rate(f64),
    Window(usize),
}

fn parse_steps(list: &str) -> Result<Vec<Step>, Failure> {
    list.split(',')
        .map(|item| {
            let bad = || Failure::usage(format!("bad step {item:?}: use rate:R or window:W"));
            let (kind, value) = item.trim().split_once(':').ok_or_else(bad)?;
            match kind {
                "rate" => value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .map(Step::Rate)
                    .ok_or_else(bad),
                "window" => value.parse::<usize>().ok().filter(|w| *w > 0).map(Step::Window).ok_or_else(bad),
                _ => Err(bad()),
            }
        })
        .collect()
}

struct Plan {
    rooms: usize,
    subscribers: usize,
    publishers: usize,
    steps: Vec<Step>,
    step_duration: Duration,
    drain: Duration,
    size: usize,
}

/// What the coordinator tells publishers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Wait,
    Run(usize),
    Stop(usize),
    Done,
}

struct StepCounts {
    sent: AtomicU64,
    acked: AtomicU64,
    delivered: AtomicU64,
}

struct Shared {
    steps: Vec<StepCounts>,
    errors: AtomicU64,
    closed: AtomicU64,
    gaps: AtomicU64,
    /// Publishers still waiting for acks of the current step.
    publishing: AtomicUsize,
}

async fn pubsub(
    target: Target,
    base: &str,
    scope: &str,
    name: &str,
    plan: Plan,
    concurrency: usize,
) -> Result<Value, Failure> {
    let shared = Arc::new(Shared {
        steps: (0..plan.steps.len())
            .map(|_| StepCounts {
                sent: AtomicU64::new(0),
                acked: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
            })
            .collect(),
        errors: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        gaps: AtomicU64::new(0),
        publishing: AtomicUsize::new(0),
    });
    let start = Instant::now();
    let room_names: Vec<String> = if plan.rooms <= 1 {
        vec![name.to_owned()]
    } else {
        (0..plan.rooms).map(|i| format!("{name}-{i}")).collect()
    };

    // Connect every subscriber, then every publisher, with a bounded number of handshakes in flight.
    let gate = Arc::new(Semaphore::new(concurrency));
    let connect_started = Instant::now();
    let mut handshakes = Vec::new();
    for room in &room_names {
        let url = room_url(target, base, scope, room, None);
        for i in 0..plan.subscribers + plan.publishers {
            let (url, gate) = (url.clone(), gate.clone());
            handshakes.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                open(&url).await.map(|(w, r, _)| (i, w, r))
            }));
        }
    }
    let (finish, finished) = watch::channel(false);
    let (phase_tx, phase_rx) = watch::channel(Phase::Wait);
    let mut subscribers = Vec::new();
    let mut publishers = Vec::new();
    let pub_count = room_names.len() * plan.publishers;
    for handshake in handshakes {
        let (i, writer, reader) = handshake.await.map_err(|e| Failure::failed(e.to_string()))??;
        if i < plan.subscribers {
            subscribers.push(tokio::spawn(subscribe(
                target,
                writer,
                reader,
                start,
                plan.steps.len(),
                shared.clone(),
                finished.clone(),
            )));
        } else {
            let rates: Vec<Step> = plan
                .steps
                .iter()
                .map(|step| match *step {
                    Step::Rate(rate) => Step::Rate(rate / pub_count as f64),
                    window => window,
                })
                .collect();
            publishers.push(tokio::spawn(publish(
                target,
                writer,
                reader,
                start,
                rates,
                plan.size,
                shared.clone(),
                phase_rx.clone(),
            )));
        }
    }
    let connect_s = connect_started.elapsed().as_secs_f64();
    let receivers_per_message = plan.subscribers as u64;

    let mut step_reports = Vec::new();
    let mut saturated = false;
    for (k, step) in plan.steps.iter().enumerate() {
        // Past saturation an open-loop step only grows a backlog: skip the remaining rate steps.
        if saturated && matches!(step, Step::Rate(_)) {
            step_reports.push(json!({ "step": k, "skipped": true, "mode": "open", "rate": match step { Step::Rate(r) => Some(*r), Step::Window(_) => None } }));
            eprintln!("@skip {k}");
            continue;
        }
        // Markers on stderr let a caller sample server CPU and metrics around each step.
        eprintln!("@ready {k}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cpu_before = cpu_seconds();
        shared.publishing.store(publishers.len(), Ordering::SeqCst);
        let started = Instant::now();
        let _ = phase_tx.send(Phase::Run(k));
        tokio::time::sleep(plan.step_duration).await;
        let _ = phase_tx.send(Phase::Stop(k));
        let publish_s = started.elapsed().as_secs_f64();
        // Wait until publishers have their acks and subscribers their deliveries (or --drain).
        let counts = &shared.steps[k];
        let drain_until = Instant::now() + plan.drain;
        loop {
            let expected = counts.acked.load(Ordering::SeqCst) * receivers_per_message;
            let done = shared.publishing.load(Ordering::SeqCst) == 0
                && counts.delivered.load(Ordering::SeqCst) >= expected;
            if done || Instant::now() >= drain_until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let drained_s = started.elapsed().as_secs_f64() - publish_s;
        let acked = counts.acked.load(Ordering::SeqCst);
        let delivered = counts.delivered.load(Ordering::SeqCst);
        eprintln!("@done {k}");
        if let Step::Rate(rate) = step {
            let complete =
                delivered >= acked * receivers_per_message && shared.publishing.load(Ordering::SeqCst) == 0;
            if !complete || (acked as f64) < 0.9 * rate * publish_s {
                saturated = true;
            }
        }
        step_reports.push(json!({
            "step": k,
            "mode": match step { Step::Rate(_) => "open", Step::Window(_) => "closed" },
            "rate": match step { Step::Rate(rate) => Some(*rate), Step::Window(_) => None },
            "window": match step { Step::Window(w) => Some(*w), Step::Rate(_) => None },
            "duration_s": publish_s,
            "drain_s": drained_s,
            "sent": counts.sent.load(Ordering::SeqCst),
            "acked": acked,
            "delivered": delivered,
            "expected_deliveries": acked * receivers_per_message,
            "acked_per_s": acked as f64 / publish_s,
            "delivered_per_s": delivered as f64 / publish_s,
            "generator_cpu_s": cpu_seconds() - cpu_before,
        }));
        tracing::info!(
            "step {k} {step:?}: {:.0} delivered/s, {} of {} deliveries",
            delivered as f64 / publish_s,
            delivered,
            acked * receivers_per_message
        );
    }
    let _ = phase_tx.send(Phase::Done);
    let mut acks = vec![histogram(); plan.steps.len()];
    for task in publishers {
        if let Ok(histograms) = task.await {
            for (k, h) in histograms.into_iter().enumerate() {
                let _ = acks[k].add(h);
            }
        }
    }
    let _ = finish.send(true);
    let mut latency = vec![histogram(); plan.steps.len()];
    for task in subscribers {
        if let Ok(histograms) = task.await {
            for (k, h) in histograms.into_iter().enumerate() {
                let _ = latency[k].add(h);
            }
        }
    }
    for (k, report) in step_reports.iter_mut().enumerate() {
        if report.get("skipped").is_some() {
            continue;
        }
        report["latency_ms"] = percentiles(&latency[k]);
        report["ack_latency_ms"] = percentiles(&acks[k]);
    }
    Ok(json!({
        "scenario": "pubsub",
        "rooms": room_names.len(),
        "subscribers": plan.subscribers,
        "publishers": plan.publishers,
        "connect_s": connect_s,
        "errors": shared.errors.load(Ordering::SeqCst),
        "closed": shared.closed.load(Ordering::SeqCst),
        "gaps": shared.gaps.load(Ordering::SeqCst),
        "steps": step_reports,
    }))
}

/// Sends the runtime's text heartbeat (edgeroom) so long runs are not closed as silent.
const HEARTBEAT: Duration = Duration::from_secs(20);

async fn subscribe(
    target: Target,
    mut writer: Writer,
    mut reader: Reader,
    start: Instant,
    steps: usize,
    shared: Arc<Shared>,
    mut finished: watch::Receiver<bool>,
) -> Vec<Histogram<u64>> {
    let mut latency = vec![histogram(); steps];
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            message = reader.next() => {
                let Some(Ok(message)) = message else {
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let Some(frame) = parse(&message) else { continue };
                let now = micros(start);
                events_of(&frame, |_, stamp| {
                    if let Some(stamp) = stamp {
                        if let Some(h) = latency.get_mut(stamp.s) {
                            let _ = h.record(now.saturating_sub(stamp.t));
                            if let Some(counts) = shared.steps.get(stamp.s) {
                                counts.delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                });
                match frame.kind.as_str() {
                    "error" => { shared.errors.fetch_add(1, Ordering::Relaxed); }
                    "gap" => { shared.gaps.fetch_add(1, Ordering::Relaxed); }
                    _ => {}
                }
            }
            _ = heartbeat.tick(), if target == Target::Edgeroom => {
                let _ = writer.send(Message::text("ping")).await;
            }
            _ = finished.changed() => break,
        }
    }
    let _ = writer.close().await;
    latency
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    target: Target,
    mut writer: Writer,
    mut reader: Reader,
    start: Instant,
    steps: Vec<Step>,
    size: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> Vec<Histogram<u64>> {
    let mut acks = vec![histogram(); steps.len()];
    let pad = "x".repeat(size);
    // op id → (step, send instant)
    let mut in_flight: std::collections::HashMap<String, (usize, Instant)> = std::collections::HashMap::new();
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut current: Option<usize> = None;
    let mut stopping = false;
    let mut due = Instant::now();
    loop {
        // Closed loop: top up the window.
        if let (Some(k), false) = (current, stopping) {
            if let Some(Step::Window(window)) = steps.get(k) {
                while in_flight.len() < *window {
                    let now = Instant::now();
                    let op_id = uuid::Uuid::new_v4().to_string();
                    let frame = publish_frame(&op_id, micros(start), k, &pad);
                    in_flight.insert(op_id, (k, now));
                    shared.steps[k].sent.fetch_add(1, Ordering::Relaxed);
                    if writer.send(Message::text(frame)).await.is_err() {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        if stopping && in_flight.is_empty() {
            stopping = false;
            current = None;
            shared.publishing.fetch_sub(1, Ordering::SeqCst);
        }
        let open_rate = match (current, stopping) {
            (Some(k), false) => match steps.get(k) {
                Some(Step::Rate(rate)) => Some((k, *rate)),
                _ => None,
            },
            _ => None,
        };
        tokio::select! {
            biased;
            message = reader.next() => {
                let Some(Ok(message)) = message else {
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                let Some(frame) = parse(&message) else { continue };
                if let Some((op_id, _seq)) = ack_of(target, &frame) {
                    if let Some((k, sent_at)) = in_flight.remove(op_id) {
                        shared.steps[k].acked.fetch_add(1, Ordering::Relaxed);
                        let _ = acks[k].record(u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                } else if frame.kind == "error" {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("publisher: {:?} {:?}", frame.code, frame.message);
                }
            }
            _ = tokio::time::sleep_until(due), if open_rate.is_some() => {
                if let Some((k, rate)) = open_rate {
                    // Open loop: the stamp is the scheduled time, so falling behind shows as latency.
                    let op_id = uuid::Uuid::new_v4().to_string();
                    let stamp = u64::try_from((due - start).as_micros()).unwrap_or(u64::MAX);
                    let frame = publish_frame(&op_id, stamp, k, &pad);
                    in_flight.insert(op_id, (k, due));
                    shared.steps[k].sent.fetch_add(1, Ordering::Relaxed);
                    if writer.send(Message::text(frame)).await.is_err() {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    due += Duration::from_secs_f64(1.0 / rate);
                }
            }
            changed = phase.changed() => {
                if changed.is_err() { break; }
                let now = *phase.borrow_and_update();
                match now {
                    Phase::Run(k) => {
                        current = Some(k);
                        stopping = false;
                        // Spread publishers' schedules over one period.
                        due = Instant::now() + match steps.get(k) {
                            Some(Step::Rate(rate)) => Duration::from_secs_f64(rand::random::<f64>() / rate),
                            _ => Duration::ZERO,
                        };
                    }
                    Phase::Stop(_) => stopping = current.is_some(),
                    Phase::Done => break,
                    Phase::Wait => {}
                }
            }
            _ = heartbeat.tick(), if target == Target::Edgeroom => {
                let _ = writer.send(Message::text("ping")).await;
            }
        }
    }
    let _ = writer.close().await;
    acks
}

// ---------------------------------------------------------------------------------------------
// join storm

async fn join(target: Target, url: &str, clients: usize, timeout: Duration) -> Result<Value, Failure> {
    let start = Instant::now();
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let converged_count = Arc::new(AtomicUsize::new(0));
    let (finish, finished) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (url, frames, bytes, mut finished) =
            (url.to_owned(), frames.clone(), bytes.clone(), finished.clone());
        let converged_count = converged_count.clone();
        tasks.push(tokio::spawn(async move {
            let (mut writer, mut reader, welcome) = match open(&url).await {
                Ok(opened) => opened,
                Err(error) => {
                    converged_count.fetch_add(1, Ordering::SeqCst);
                    return Err(error);
                }
            };
            let welcomed = start.elapsed();
            let mut members: HashSet<String> = welcome.members.iter().flatten().map(MemberIn::key).collect();
            let mut converged = (members.len() >= clients).then(|| start.elapsed());
            if converged.is_some() {
                converged_count.fetch_add(1, Ordering::SeqCst);
            }
            let deadline = start + timeout;
            let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
            loop {
                tokio::select! {
                    message = reader.next() => {
                        let Some(Ok(message)) = message else { break };
                        frames.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(message.len() as u64, Ordering::Relaxed);
                        let Some(frame) = parse(&message) else { continue };
                        match frame.kind.as_str() {
                            "presence" => {
                                for m in frame.joined.iter().flatten() { members.insert(m.key()); }
                                for id in frame.left.iter().flatten() { members.remove(&id.to_string()); }
                            }
                            "join" => { if let Some(m) = &frame.member { members.insert(m.key()); } }
                            "leave" => { if let Some(id) = &frame.id { members.remove(&id.to_string()); } }
                            _ => {}
                        }
                        if converged.is_none() && members.len() >= clients {
                            converged = Some(start.elapsed());
                            converged_count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = heartbeat.tick(), if target == Target::Edgeroom => { let _ = writer.send(Message::text("ping")).await; }
                    _ = finished.changed() => break,
                }
            }
            if converged.is_none() {
                converged_count.fetch_add(1, Ordering::SeqCst);
            }
            let _ = writer.close().await;
            Ok::<_, Failure>((welcomed, converged))
        }));
    }
    // Wait until every client converged (or failed, or the timeout), then close them all.
    let end = start + timeout;
    while Instant::now() < end {
        // Each task counts itself once: when it converged, or when it gave up.
        if converged_count.load(Ordering::SeqCst) >= clients {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = finish.send(true);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.map_err(|e| Failure::failed(e.to_string()))?);
    }
    let mut welcome = histogram();
    let mut converge = histogram();
    let (mut not_converged, mut failed) = (0, 0);
    let mut last_converged = Duration::ZERO;
    let mut last_welcome = Duration::ZERO;
    for result in results {
        match result {
            Ok((welcomed, converged)) => {
                let _ = welcome.record(welcomed.as_micros() as u64);
                last_welcome = last_welcome.max(welcomed);
                match converged {
                    Some(at) => {
                        let _ = converge.record(at.as_micros() as u64);
                        last_converged = last_converged.max(at);
                    }
                    None => not_converged += 1,
                }
            }
            Err(error) => {
                tracing::warn!("{error}");
                failed += 1;
            }
        }
    }
    Ok(json!({
        "scenario": "join",
        "clients": clients,
        "failed": failed,
        "not_converged": not_converged,
        "all_welcomed_ms": last_welcome.as_secs_f64() * 1000.0,
        "all_converged_ms": if not_converged == 0 && failed == 0 { Some(last_converged.as_secs_f64() * 1000.0) } else { None },
        "welcome_ms": percentiles(&welcome),
        "converged_ms": percentiles(&converge),
        "frames": frames.load(Ordering::Relaxed),
        "bytes": bytes.load(Ordering::Relaxed),
    }))
}

// ---------------------------------------------------------------------------------------------
// fill, resume, connect

/// Publishes `events` messages, closed loop; returns the first and last seq.
async fn fill(
    target: Target,
    url: &str,
    events: u64,
    window: usize,
    size: usize,
) -> Result<(u64, u64), Failure> {
    let (mut writer, mut reader, _) = open(url).await?;
    let pad = "x".repeat(size);
    let mut in_flight: HashSet<String> = HashSet::new();
    let (mut sent, mut acked, mut first, mut last) = (0u64, 0u64, u64::MAX, 0u64);
    while acked < events {
        while sent < events && in_flight.len() < window {
            let op_id = uuid::Uuid::new_v4().to_string();
            writer
                .send(Message::text(publish_frame(&op_id, 0, 0, &pad)))
                .await
                .map_err(|e| Failure::failed(e.to_string()))?;
            in_flight.insert(op_id);
            sent += 1;
        }
        let message = tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .map_err(|_| Failure::failed("fill: no ack within 30 s"))?;
        let Some(Ok(message)) = message else { return Err(Failure::failed("fill: connection closed")) };
        let Some(frame) = parse(&message) else { continue };
        if let Some((op_id, seq)) = ack_of(target, &frame) {
            if in_flight.remove(op_id) {
                acked += 1;
                first = first.min(seq);
                last = last.max(seq);
            }
        } else if frame.kind == "error" {
            return Err(Failure::failed(format!("fill: {:?} {:?}", frame.code, frame.message)));
        }
    }
    let _ = writer.close().await;
    Ok((first, last))
}

async fn resume(
    target: Target,
    base: &str,
    scope: &str,
    name: &str,
    clients: usize,
    missed: u64,
    timeout: Duration,
) -> Result<Value, Failure> {
    let url = room_url(target, base, scope, name, None);
    // The room's seq before the events the clients will have missed.
    let (mut writer, _, welcome) = open(&url).await?;
    let _ = writer.close().await;
    let from = welcome.seq.unwrap_or_default();
    let fill_started = Instant::now();
    let (_, last) = fill(target, &url, missed, 50, 0).await?;
    let fill_s = fill_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let resume_url = room_url(target, base, scope, name, Some(from));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let url = resume_url.clone();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let (mut writer, mut reader, _) = open(&url).await?;
            let mut got = 0u64;
            let mut gap = false;
            let deadline = start + timeout;
            while got < missed {
                let next = tokio::time::timeout_at(deadline, reader.next()).await;
                let Ok(Some(Ok(message))) = next else { break };
                let Some(frame) = parse(&message) else { continue };
                if frame.kind == "gap" {
                    gap = true;
                    break;
                }
                events_of(&frame, |seq, _| {
                    if seq > from && seq <= last {
                        got += 1;
                    }
                });
            }
            let took = begun.elapsed();
            let _ = writer.close().await;
            Ok::<_, Failure>((took, got, gap))
        }));
    }
    let mut times = histogram();
    let (mut complete, mut gaps, mut failed, mut events) = (0, 0, 0, 0u64);
    for task in tasks {
        match task.await.map_err(|e| Failure::failed(e.to_string()))? {
            Ok((took, got, gap)) => {
                events += got;
                gaps += u64::from(gap);
                if got >= missed {
                    complete += 1;
                    let _ = times.record(took.as_micros() as u64);
                }
            }
            Err(error) => {
                tracing::warn!("{error}");
                failed += 1;
            }
        }
    }
    Ok(json!({
        "scenario": "resume",
        "clients": clients,
        "missed": missed,
        "fill_s": fill_s,
        "complete": complete,
        "gaps": gaps,
        "failed": failed,
        "events": events,
        "all_done_ms": start.elapsed().as_secs_f64() * 1000.0,
        "resume_ms": percentiles(&times),
    }))
}

async fn connect_new(
    target: Target,
    base: &str,
    scope: &str,
    name: &str,
    count: usize,
) -> Result<Value, Failure> {
    let mut times = histogram();
    for i in 0..count {
        let url = room_url(target, base, scope, &format!("{name}-{i}"), None);
        let begun = Instant::now();
        let (mut writer, _, _) = open(&url).await?;
        let _ = times.record(begun.elapsed().as_micros() as u64);
        let _ = writer.close().await;
    }
    Ok(json!({ "scenario": "connect", "count": count, "first_connect_ms": percentiles(&times) }))
}

// ---------------------------------------------------------------------------------------------
// counter

async fn counter_adds(
    base: &str,
    tenant: &str,
    name: &str,
    concurrency: usize,
    duration: Duration,
    shards: u32,
) -> Result<Value, Failure> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| Failure::failed(e.to_string()))?;
    let base = base.trim_end_matches('/');
    let url = format!("{base}/v1/t/{tenant}/counters/{name}");
    if shards > 1 {
        let response = http
            .post(format!("{url}/shards"))
            .json(&json!({ "shards": shards }))
            .send()
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(Failure::failed(format!("setting shards: {}", response.status())));
        }
    }
    let start = Instant::now();
    let end = start + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url, errors) = (http.clone(), format!("{url}/add"), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram();
            let mut ok = 0u64;
            while Instant::now() < end {
                let begun = Instant::now();
                let body = json!({ "delta": 1, "op_id": uuid::Uuid::new_v4().to_string() });
                match http.post(&url).json(&body).send().await {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        ok += 1;
                        let _ = latency.record(begun.elapsed().as_micros() as u64);
                    }
                    Ok(response) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("counter add: {}", response.status());
                    }
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("counter add: {error}");
                    }
                }
            }
            (ok, latency)
        }));
    }
    let mut latency = histogram();
    let mut ok = 0;
    for task in tasks {
        if let Ok((n, h)) = task.await {
            ok += n;
            let _ = latency.add(h);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let value: Value = http
        .get(format!("{url}?consistency=strong"))
        .send()
        .await
        .map_err(|e| Failure::failed(e.to_string()))?
        .json()
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    Ok(json!({
        "scenario": "counter",
        "shards": shards,
        "concurrency": concurrency,
        "adds": ok,
        "errors": errors.load(Ordering::Relaxed),
        "adds_per_s": ok as f64 / seconds,
        "latency_ms": percentiles(&latency),
        "final": value,
    }))
}
