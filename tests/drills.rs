//! Fault drills (issue 14, item 4), against real `wrangler dev` servers on loopback:
//!
//! - **kill**: publishers do acknowledged publishes at a steady rate into a few rooms while the
//!   whole runtime (wrangler and workerd) is SIGKILLed at random moments and restarted on the same
//!   state and port. Every acknowledged op must be in history exactly once, at its acked seq; ops
//!   that were not acknowledged may be lost or applied, but never twice; every subscriber (SDK
//!   clients and raw WebSocket clients that check what the server itself sends) sees each seq of its
//!   room once, in order, without a gap.
//! - **churn**: many clients connect to a few rooms, stay a random while, leave (politely, by
//!   dropping the socket, or cut by a relay) and come back resuming from their last seq, while
//!   publishers publish. Every client's stream must be gapless and duplicate-free from seq 1 to the
//!   room's last seq.
//! - **flush**: publishers publish while the flush's R2, D1 and KV writes fail (each, then all,
//!   through the `fault-injection` switch); after each heal, every store catches up (the catch-up
//!   time is measured) and nothing is lost.
//!
//! The defaults are a short version that runs with the other tests (`scripts/test.sh`).
//! `scripts/drills.sh` runs the long version; sizes and durations come from `EDGEROOM_DRILL_*`
//! variables (see `Config`). Each drill prints a summary (`--nocapture` to see it).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeroom_client::{Error, OpError, Position, ReconnectPolicy, RestClient, Room, RoomEvent, RoomOptions};
use edgeroom_protocol::{ServerMessage, WireFrame};
use edgeroom_tests::link::Link;
use edgeroom_tests::{Server, StateDir};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

const ADMIN_KEY: &str = "drills-admin-key";

/// Server settings every drill shares: no per-connection rate limit (the drills publish fast) and
/// history long enough to check every event.
const BASE_VARS: &[(&str, &str)] = &[
    ("RATE_LIMIT_PER_SEC", "100000"),
    ("RATE_LIMIT_BURST", "100000"),
    ("HISTORY_MAX_EVENTS", "1000000"),
    ("ADMIN_KEY", ADMIN_KEY),
];

/// Sizes and durations, from the environment (short defaults).
#[derive(Debug, Clone)]
struct Config {
    /// `EDGEROOM_DRILL_SECS`: how long the kill and churn drills publish (default 12).
    secs: u64,
    /// `EDGEROOM_DRILL_KILLS`: SIGKILLs of the runtime in the kill drill (default 2).
    kills: usize,
    /// `EDGEROOM_DRILL_CLIENTS`: clients of the churn drill (default 30).
    clients: usize,
    /// `EDGEROOM_DRILL_ROOMS`: rooms per drill (default 3).
    rooms: usize,
    /// `EDGEROOM_DRILL_RATE`: publishes per second of each publisher (default 20).
    rate: u64,
    /// `EDGEROOM_DRILL_FAULT_SECS`: how long each flush fault lasts (default 3).
    fault_secs: u64,
    /// `EDGEROOM_DRILL_SESSION_MS`: longest churn session before a client leaves (default 3000).
    session_ms: u64,
    /// `EDGEROOM_DRILL_SEED`: seed of the drills' random choices (default: random, printed).
    seed: u64,
}

impl Config {
    fn from_env() -> Self {
        fn var(name: &str, default: u64) -> u64 {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        }
        Self {
            secs: var("EDGEROOM_DRILL_SECS", 12),
            kills: var("EDGEROOM_DRILL_KILLS", 2) as usize,
            clients: var("EDGEROOM_DRILL_CLIENTS", 30) as usize,
            rooms: var("EDGEROOM_DRILL_ROOMS", 3).max(1) as usize,
            rate: var("EDGEROOM_DRILL_RATE", 20).max(1),
            fault_secs: var("EDGEROOM_DRILL_FAULT_SECS", 3),
            session_ms: var("EDGEROOM_DRILL_SESSION_MS", 3000).max(200),
            seed: var("EDGEROOM_DRILL_SEED", rand::random::<u32>() as u64),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a subscriber saw.

/// One client's view of one room's stream, kept across its sessions.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// The epoch of the last welcome.
    epoch: Option<String>,
    /// The last seq delivered.
    last: u64,
    /// Events delivered with a new seq (`last + 1`, or beyond it after a hole).
    delivered: u64,
    /// Events at or below `last` (seen before).
    duplicates: u64,
    /// Events above `last + 1` (something was skipped).
    holes: u64,
    /// `gap` markers (history could not cover a resume).
    gaps: u64,
    /// Sessions (welcomes).
    sessions: u64,
    /// Links that ended inside a session (server restarts, relay cuts, heartbeat timeouts).
    link_errors: u64,
    /// Holes the SDK noticed in what the server sent (it resumes to fill them).
    sdk_holes: u64,
    /// Connection attempts that failed.
    connect_failures: u64,
}

impl Tally {
    fn event(&mut self, seq: u64) {
        if seq <= self.last {
            self.duplicates += 1;
            return;
        }
        if seq != self.last + 1 {
            self.holes += 1;
        }
        self.last = seq;
        self.delivered += 1;
    }

    fn gap(&mut self, seq: u64) {
        self.gaps += 1;
        self.last = seq;
    }

    fn welcome(&mut self, epoch: &str) {
        self.sessions += 1;
        self.epoch = Some(epoch.to_owned());
    }

    fn clean(&self, last: u64) -> bool {
        self.last == last
            && self.delivered == last
            && self.duplicates == 0
            && self.holes == 0
            && self.gaps == 0
            && self.sdk_holes == 0
    }
}

/// Sums of many tallies, for the summary.
#[derive(Debug, Default)]
struct Totals {
    clients: usize,
    delivered: u64,
    min_delivered: Option<u64>,
    max_delivered: u64,
    duplicates: u64,
    holes: u64,
    gaps: u64,
    sessions: u64,
    link_errors: u64,
    sdk_holes: u64,
    connect_failures: u64,
}

impl Totals {
    fn add(&mut self, tally: &Tally) {
        self.clients += 1;
        self.delivered += tally.delivered;
        self.min_delivered = Some(self.min_delivered.map_or(tally.delivered, |m| m.min(tally.delivered)));
        self.max_delivered = self.max_delivered.max(tally.delivered);
        self.duplicates += tally.duplicates;
        self.holes += tally.holes;
        self.gaps += tally.gaps;
        self.sessions += tally.sessions;
        self.link_errors += tally.link_errors;
        self.sdk_holes += tally.sdk_holes;
        self.connect_failures += tally.connect_failures;
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what}: {} clients, delivered {} (per client {}..={}), duplicates {}, holes {}, gaps {}, \
             sessions {}, links lost in session {}, holes the SDK refilled {}, failed connects {}",
            self.clients,
            self.delivered,
            self.min_delivered.unwrap_or(0),
            self.max_delivered,
            self.duplicates,
            self.holes,
            self.gaps,
            self.sessions,
            self.link_errors,
            self.sdk_holes,
            self.connect_failures
        )
    }
}

/// The room each client watches and the seq it must reach before it may stop (`u64::MAX` while
/// publishing goes on).
#[derive(Clone)]
struct Watch {
    room: String,
    target: Arc<AtomicU64>,
}

impl Watch {
    fn reached(&self, tally: &Tally) -> bool {
        tally.last >= self.target.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// SDK options for drills: quick reconnects, operations kept long enough to outlive a restart.
fn sdk_options(base: &str, room: &str, heartbeat: Duration) -> RoomOptions {
    RoomOptions::new(base, "acme", room)
        .with_heartbeat(heartbeat, heartbeat * 3)
        .with_reconnect(ReconnectPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(1000),
            ..ReconnectPolicy::default()
        })
        .with_op_ttl(Duration::from_secs(240))
        .with_pending_limits(200_000, 64 << 20)
}

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leave {
    /// A close frame.
    Polite,
    /// The socket is dropped without a close frame.
    Abrupt,
}

/// One SDK session: connects resuming from the tally's position, records what the stream yields
/// until `leave_at` (or the target is reached), then closes and records what was still delivered.
async fn sdk_session(base: &str, watch: &Watch, tally: &mut Tally, leave_at: Instant, heartbeat: Duration) {
    let position = Position { epoch: tally.epoch.clone(), seq: tally.last };
    let options = sdk_options(base, &watch.room, heartbeat).with_resume(position);
    let (room, mut events) = match Room::connect(options).await {
        Ok(connected) => connected,
        Err(_) => {
            tally.connect_failures += 1;
            sleep(Duration::from_millis(200)).await;
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => record_sdk(tally, event),
                None => break,
            },
            _ = tick.tick() => {
                if Instant::now() >= leave_at || watch.reached(tally) {
                    break;
                }
            }
        }
    }
    room.close().await;
    // Events already handed to the stream still count (the position covers them).
    while let Some(event) = events.recv().await {
        record_sdk(tally, event);
    }
}

fn record_sdk(tally: &mut Tally, event: RoomEvent) {
    match event {
        RoomEvent::Connected(connected) => tally.welcome(&connected.epoch),
        RoomEvent::Event(event) => tally.event(event.seq),
        RoomEvent::Gap(gap) => {
            tally.epoch = Some(gap.epoch);
            tally.gap(gap.seq);
        }
        RoomEvent::Error(Error::SequenceHole { .. }) => tally.sdk_holes += 1,
        RoomEvent::Error(Error::Shutdown) => {}
        RoomEvent::Error(_) => tally.link_errors += 1,
        RoomEvent::Presence(_) | RoomEvent::OpFailed(_) => {}
    }
}

/// One raw WebSocket session: the client checks what the server itself sends (the SDK would
/// drop a duplicate silently). Binary or JSON frames; leaves politely or abruptly.
async fn raw_session(
    ws_base: &str,
    watch: &Watch,
    tally: &mut Tally,
    leave_at: Instant,
    format: &str,
    leave: Leave,
) {
    let epoch = tally.epoch.as_ref().map(|e| format!("&epoch={e}")).unwrap_or_default();
    let url = format!(
        "{ws_base}/v1/t/acme/rooms/{}/ws?format={format}&resume_from={}{epoch}",
        watch.room, tally.last
    );
    let connect = timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url.as_str())).await;
    let Ok(Ok((mut socket, _))) = connect else {
        tally.connect_failures += 1;
        sleep(Duration::from_millis(200)).await;
        return;
    };
    let mut ping = tokio::time::interval(Duration::from_secs(5));
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            frame = socket.next() => {
                let frame = match frame {
                    Some(Ok(Message::Text(text))) if text.as_str() == "pong" => continue,
                    Some(Ok(Message::Text(text))) => WireFrame::Text(text.to_string()),
                    Some(Ok(Message::Binary(bytes))) => WireFrame::Binary(bytes.to_vec()),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        tally.link_errors += 1;
                        return;
                    }
                    Some(Ok(_)) => continue,
                };
                match ServerMessage::decode(&frame) {
                    Ok(ServerMessage::Welcome(welcome)) => tally.welcome(&welcome.epoch),
                    Ok(ServerMessage::Gap(gap)) => tally.gap(gap.seq),
                    Ok(ServerMessage::Event(event)) => tally.event(event.seq),
                    Ok(ServerMessage::Events(batch)) => batch.events.iter().for_each(|e| tally.event(e.seq)),
                    Ok(_) => {}
                    Err(error) => panic!("undecodable frame from the server: {error}"),
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::text("ping")).await.is_err() {
                    tally.link_errors += 1;
                    return;
                }
            }
            _ = tick.tick() => {
                if Instant::now() >= leave_at || watch.reached(tally) {
                    break;
                }
            }
        }
    }
    if leave == Leave::Polite {
        let _ = timeout(Duration::from_secs(2), socket.close(None)).await;
    }
}

/// A subscriber that stays connected (it reconnects when the link breaks) until its room's
/// target is reached or `give_up` passes.
async fn steady_subscriber(base: String, watch: Watch, raw: Option<&'static str>, give_up: Instant) -> Tally {
    let mut tally = Tally::default();
    let ws_base = base.replacen("http://", "ws://", 1);
    while !watch.reached(&tally) && Instant::now() < give_up {
        match raw {
            Some(format) => raw_session(&ws_base, &watch, &mut tally, give_up, format, Leave::Polite).await,
            None => sdk_session(&base, &watch, &mut tally, give_up, Duration::from_millis(500)).await,
        }
        if !watch.reached(&tally) {
            sleep(Duration::from_millis(100)).await;
        }
    }
    tally
}

/// One published operation and what became of it.
struct Published {
    publisher: usize,
    n: u64,
    outcome: Result<u64, OpError>,
}

/// A publisher: one SDK client publishing `{"p": id, "n": n}` at `rate` per second until `stop`,
/// not waiting for acks (they are collected as they come).
struct Publisher {
    client: Room,
    issued: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    /// Links the publisher lost (its stream's errors).
    links_lost: Arc<AtomicU64>,
    done: Arc<std::sync::Mutex<Vec<Published>>>,
    task: JoinHandle<()>,
}

/// What the publishers of a drill ended with.
#[derive(Default)]
struct Outcomes {
    ops: BTreeMap<usize, Vec<Published>>,
    /// Ops still waiting for their outcome when the drill stopped waiting (then closed).
    stuck: u64,
    /// Per publisher with stuck ops: its room, counts, connection state and which ops.
    stuck_detail: Vec<String>,
    links_lost: u64,
}

impl Outcomes {
    fn line(&self) -> String {
        let mut unacked: BTreeMap<String, usize> = BTreeMap::new();
        for error in self.ops.values().flatten().filter_map(|op| op.outcome.as_ref().err()) {
            let name = format!("{error:?}");
            *unacked.entry(name.split([' ', '{']).next().unwrap_or_default().to_owned()).or_default() += 1;
        }
        format!(
            "unacked by reason {unacked:?}; ops still waiting when the drill stopped waiting {} {:?} \
             (then closed: their outcome is `Closed`); links the publishers lost {}",
            self.stuck, self.stuck_detail, self.links_lost
        )
    }

    fn assert_none_stuck(&self) {
        assert_eq!(self.stuck, 0, "operations never ended: {}", self.line());
    }
}

impl Publisher {
    /// `ttl` is the operations' time to live (`None`: long enough to outlive any restart).
    async fn start(
        base: &str,
        room: &str,
        id: usize,
        rate: u64,
        ttl: Option<Duration>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let mut options = sdk_options(base, room, Duration::from_millis(500));
        if let Some(ttl) = ttl {
            options = options.with_op_ttl(ttl);
        }
        let (client, mut events) = Room::connect(options).await.expect("publisher connects");
        // The publisher's own stream must be read, or the client stops reading its socket.
        let links_lost = Arc::new(AtomicU64::new(0));
        let losing = links_lost.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if matches!(event, RoomEvent::Error(_)) {
                    losing.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let (issued, acked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let done = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (counting, acking, recording, publishing) =
            (issued.clone(), acked.clone(), done.clone(), client.clone());
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                ticks.tick().await;
                let operation = publishing.publish(&json!({"p": id, "n": n}));
                counting.fetch_add(1, Ordering::SeqCst);
                let (acking, recording) = (acking.clone(), recording.clone());
                tokio::spawn(async move {
                    let outcome = operation.await;
                    if outcome.is_ok() {
                        acking.fetch_add(1, Ordering::SeqCst);
                    }
                    recording.lock().unwrap().push(Published { publisher: id, n, outcome });
                });
                n += 1;
            }
        });
        Self { client, issued, acked, links_lost, done, task }
    }

    /// Ops issued whose outcome is not known yet.
    fn in_flight(&self) -> u64 {
        self.issued.load(Ordering::SeqCst).saturating_sub(self.resolved())
    }

    fn resolved(&self) -> u64 {
        self.done.lock().unwrap().len() as u64
    }

    /// Waits (up to `limit`) for every op of every publisher to end, then closes them.
    async fn finish_all(publishers: Vec<(usize, Publisher)>, limit: Duration) -> Outcomes {
        let deadline = Instant::now() + limit;
        for (_, publisher) in &publishers {
            while !publisher.task.is_finished() {
                sleep(Duration::from_millis(50)).await;
            }
        }
        let unresolved = |ps: &[(usize, Publisher)]| {
            ps.iter().map(|(_, p)| p.issued.load(Ordering::SeqCst) - p.resolved()).sum::<u64>()
        };
        while unresolved(&publishers) > 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(100)).await;
        }
        let mut outcomes = Outcomes { stuck: unresolved(&publishers), ..Outcomes::default() };
        for (room, publisher) in &publishers {
            let issued = publisher.issued.load(Ordering::SeqCst);
            if publisher.resolved() < issued {
                let done: std::collections::HashSet<u64> =
                    publisher.done.lock().unwrap().iter().map(|op| op.n).collect();
                let waiting: Vec<u64> = (0..issued).filter(|n| !done.contains(n)).collect();
                outcomes.stuck_detail.push(format!(
                    "room {room}: {} of {issued} ops waiting (n {:?}..={:?}), connection {:?}",
                    waiting.len(),
                    waiting.first(),
                    waiting.last(),
                    publisher.client.connection_state()
                ));
            }
        }
        for (room, publisher) in publishers {
            publisher.client.close().await;
            // Closing ends what was stuck (as `Closed`).
            while publisher.issued.load(Ordering::SeqCst) > publisher.resolved() {
                sleep(Duration::from_millis(20)).await;
            }
            outcomes.links_lost += publisher.links_lost.load(Ordering::SeqCst);
            let done = std::mem::take(&mut *publisher.done.lock().unwrap());
            outcomes.ops.entry(room).or_default().extend(done);
        }
        outcomes
    }
}

/// Prints the publishers' progress every `every` (for long runs).
fn progress(name: &'static str, publishers: &[(usize, Publisher)], every: Duration) -> JoinHandle<()> {
    let counters: Vec<_> =
        publishers.iter().map(|(_, p)| (p.issued.clone(), p.acked.clone(), p.links_lost.clone())).collect();
    let begin = Instant::now();
    tokio::spawn(async move {
        loop {
            sleep(every).await;
            let sum = |i: usize| -> u64 {
                counters.iter().map(|c| [&c.0, &c.1, &c.2][i].load(Ordering::SeqCst)).sum()
            };
            println!(
                "   [{name} {:>5.0} s] issued {}, acked {}, publisher links lost {}",
                begin.elapsed().as_secs_f64(),
                sum(0),
                sum(1),
                sum(2)
            );
        }
    })
}

/// Every event of a room's history: `(seq, body)`.
async fn history(rest: &RestClient, room: &str) -> Vec<(u64, Value)> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = rest.history("acme", room, after, 1000).await.expect("history page");
        let Some(last) = page.events.last().map(|e| e.seq) else { break };
        events.extend(page.events.iter().map(|e| (e.seq, e.body.parse::<Value>().expect("JSON body"))));
        after = last;
    }
    events
}

/// What the publishers' ops and a room's history say together.
#[derive(Debug, Default)]
struct Ledger {
    published: u64,
    acked: u64,
    unacked: u64,
    unacked_applied: u64,
    /// Ops the SDK reported `Expired` (never sent) that history holds anyway.
    expired_applied: u64,
    history_events: u64,
    /// History seqs that are not `1..=last` in order.
    history_seq_faults: u64,
    /// Ops found more than once in history.
    applied_twice: u64,
    /// Acked ops missing from history, or found at another seq than their ack.
    acked_lost: u64,
    /// History events no publisher sent.
    strangers: u64,
}

impl Ledger {
    /// Checks `history` of one room against the ops its publishers issued.
    fn check(&mut self, ops: &[Published], history: &[(u64, Value)]) {
        let mut found: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
        for (index, (seq, body)) in history.iter().enumerate() {
            if *seq != index as u64 + 1 {
                self.history_seq_faults += 1;
            }
            match (body["p"].as_u64(), body["n"].as_u64()) {
                (Some(p), Some(n)) => found.entry((p, n)).or_default().push(*seq),
                _ => self.strangers += 1,
            }
        }
        self.history_events += history.len() as u64;
        self.applied_twice += found.values().filter(|seqs| seqs.len() > 1).count() as u64;
        let mut known = 0;
        for op in ops {
            self.published += 1;
            let seqs = found.get(&(op.publisher as u64, op.n));
            known += usize::from(seqs.is_some());
            match &op.outcome {
                Ok(seq) => {
                    self.acked += 1;
                    if seqs.is_none_or(|s| s.as_slice() != [*seq]) {
                        self.acked_lost += 1;
                    }
                }
                Err(error) => {
                    self.unacked += 1;
                    self.unacked_applied += u64::from(seqs.is_some());
                    self.expired_applied +=
                        u64::from(seqs.is_some() && matches!(error, OpError::Expired { .. }));
                }
            }
        }
        self.strangers += (found.len() - known) as u64;
    }

    fn line(&self) -> String {
        format!(
            "published {}, acked {}, unacked {} (of them applied {}, of those reported never sent {}); \
             history {} events, seq faults {}, applied twice {}, acked but lost {}, strangers {}",
            self.published,
            self.acked,
            self.unacked,
            self.unacked_applied,
            self.expired_applied,
            self.history_events,
            self.history_seq_faults,
            self.applied_twice,
            self.acked_lost,
            self.strangers
        )
    }

    fn assert_sound(&self) {
        assert_eq!(
            (
                self.history_seq_faults,
                self.applied_twice,
                self.acked_lost,
                self.strangers,
                self.expired_applied
            ),
            (0, 0, 0, 0, 0),
            "history vs acked ops: {}",
            self.line()
        );
        assert!(self.acked > 0, "nothing was acknowledged: {}", self.line());
    }
}

fn secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

// ---------------------------------------------------------------------------------------------
// Drill 1: SIGKILL the runtime during sustained acknowledged publishing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_kill_the_runtime_while_publishing() {
    let config = Config::from_env();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let started = Instant::now();
    let mut server = Server::start_on_with_vars(StateDir::new(), BASE_VARS).await;
    let base = server.http_url("");
    let rooms: Vec<Watch> = (0..config.rooms)
        .map(|i| Watch { room: format!("kill-{i}"), target: Arc::new(AtomicU64::new(u64::MAX)) })
        .collect();

    // Per room: two SDK subscribers and one raw subscriber (binary or JSON), from seq 0.
    let give_up = Instant::now() + Duration::from_secs(config.secs + 60 * (config.kills as u64 + 2));
    let mut subscribers = Vec::new();
    for (i, watch) in rooms.iter().enumerate() {
        for raw in [None, None, Some(if i % 2 == 0 { "binary" } else { "json" })] {
            subscribers.push(tokio::spawn(steady_subscriber(base.clone(), watch.clone(), raw, give_up)));
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    // Per room: two publishers whose ops outlive a restart (all should end acked) and one whose
    // ops have a 2-second time to live (shorter than a restart: some end unacked, and those may be
    // lost or applied, but never twice).
    for (i, watch) in rooms.iter().enumerate() {
        for (p, ttl) in [None, None, Some(Duration::from_secs(2))].into_iter().enumerate() {
            let publisher = Publisher::start(&base, &watch.room, p, config.rate, ttl, stop.clone()).await;
            publishers.push((i, publisher));
        }
    }

    let reporter = progress("kill", &publishers, Duration::from_secs(30));
    let publish_for = Duration::from_secs(config.secs);
    let begin = Instant::now();
    // One kill at a random moment of each of `kills` equal slots of the publishing time (10% to 90%).
    let slot = publish_for.mul_f64(0.8 / config.kills.max(1) as f64);
    let (mut restarts, mut in_flight_at_kills) = (Vec::new(), Vec::new());
    for k in 0..config.kills {
        let at = publish_for.mul_f64(0.1) + slot * k as u32 + slot.mul_f64(rng.random_range(0.0..1.0));
        sleep_until((begin + at).into()).await;
        in_flight_at_kills.push(publishers.iter().map(|(_, p)| p.in_flight()).sum::<u64>());
        let down = Instant::now();
        server.kill_and_restart().await;
        restarts.push(down.elapsed());
    }
    sleep_until((begin + publish_for).max(Instant::now() + Duration::from_secs(2)).into()).await;
    stop.store(true, Ordering::SeqCst);
    let published_for = begin.elapsed();

    reporter.abort();
    let outcomes = Publisher::finish_all(publishers, Duration::from_secs(300)).await;
    let ops = &outcomes.ops;
    let rest = RestClient::new(&base).unwrap();
    let mut ledger = Ledger::default();
    for (i, watch) in rooms.iter().enumerate() {
        let events = history(&rest, &watch.room).await;
        ledger.check(&ops[&i], &events);
        watch.target.store(events.last().map_or(0, |(seq, _)| *seq), Ordering::SeqCst);
    }
    let (mut sdk, mut raw) = (Totals::default(), Totals::default());
    let mut unclean = Vec::new();
    for (n, subscriber) in subscribers.into_iter().enumerate() {
        let tally = subscriber.await.unwrap();
        let watch = &rooms[n / 3];
        if !tally.clean(watch.target.load(Ordering::SeqCst)) {
            unclean.push(format!("{} subscriber {n}: {tally:?}", watch.room));
        }
        if n % 3 == 2 { &mut raw } else { &mut sdk }.add(&tally);
    }
    println!(
        "\n== drill kill (seed {}): {} rooms, {} publishers at {}/s ({} with a 2 s op TTL), {} subscribers, published \
         for {}\n  \
         restarts {} (each {}), ops in flight at the kills {:?}\n  {}\n  {}\n  {}\n  {}\n  \
         whole drill {}",
        config.seed,
        rooms.len(),
        rooms.len() * 3,
        config.rate,
        rooms.len(),
        rooms.len() * 3,
        secs(published_for),
        restarts.len(),
        restarts.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(", "),
        in_flight_at_kills,
        ledger.line(),
        outcomes.line(),
        sdk.line("SDK subscribers"),
        raw.line("raw subscribers (what the server sent)"),
        secs(started.elapsed())
    );
    outcomes.assert_none_stuck();
    ledger.assert_sound();
    assert_eq!(restarts.len(), config.kills);
    assert!(unclean.is_empty(), "streams with gaps, holes or duplicates:\n{}", unclean.join("\n"));
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// Drill 2: connection churn.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_connection_churn() {
    let config = Config::from_env();
    let started = Instant::now();
    let server = Server::start_on_with_vars(StateDir::new(), BASE_VARS).await;
    let base = server.http_url("");
    let upstream = base.trim_start_matches("http://").to_owned();
    let rooms: Vec<Watch> = (0..config.rooms)
        .map(|i| Watch { room: format!("churn-{i}"), target: Arc::new(AtomicU64::new(u64::MAX)) })
        .collect();
    // A quarter of the clients go through relays that get cut (abrupt drops the SDK must notice
    // and resume from by itself).
    let mut relays = Vec::new();
    for _ in 0..4 {
        relays.push(Link::start(upstream.clone()).await);
    }
    let relay_urls: Vec<String> = relays.iter().map(Link::base_url).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for (i, watch) in rooms.iter().enumerate() {
        // Half the rate of the kill drill's publishers: many more clients receive each event.
        let rate = (config.rate / 2).max(1);
        publishers.push((i, Publisher::start(&base, &watch.room, 0, rate, None, stop.clone()).await));
    }
    let reporter = progress("churn", &publishers, Duration::from_secs(30));
    let churn_until = Instant::now() + Duration::from_secs(config.secs);
    let give_up = churn_until + Duration::from_secs(120);
    let mut clients = Vec::new();
    for n in 0..config.clients {
        let watch = rooms[n % rooms.len()].clone();
        // Client kinds: SDK direct, SDK through a relay, raw binary, raw JSON.
        let kind = n % 4;
        let url = if kind == 1 { relay_urls[n / 4 % relay_urls.len()].clone() } else { base.clone() };
        let (max_session, seed) = (config.session_ms, config.seed ^ (n as u64).wrapping_mul(0x9e37_79b9));
        clients.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut tally = Tally::default();
            let ws_base = url.replacen("http://", "ws://", 1);
            // Churn: random sessions, random ways of leaving, random pauses; then stay until the
            // room's last event.
            sleep(Duration::from_millis(rng.random_range(0..500))).await;
            while Instant::now() < churn_until {
                let leave_at = (Instant::now() + Duration::from_millis(rng.random_range(100..max_session)))
                    .min(churn_until);
                let leave = if rng.random_bool(0.5) { Leave::Polite } else { Leave::Abrupt };
                match kind {
                    0 | 1 => sdk_session(&url, &watch, &mut tally, leave_at, Duration::from_secs(2)).await,
                    2 => raw_session(&ws_base, &watch, &mut tally, leave_at, "binary", leave).await,
                    _ => raw_session(&ws_base, &watch, &mut tally, leave_at, "json", leave).await,
                }
                sleep(Duration::from_millis(rng.random_range(0..300))).await;
            }
            while !watch.reached(&tally) && Instant::now() < give_up {
                match kind {
                    0 | 1 => sdk_session(&url, &watch, &mut tally, give_up, Duration::from_secs(2)).await,
                    2 => raw_session(&ws_base, &watch, &mut tally, give_up, "binary", Leave::Polite).await,
                    _ => raw_session(&ws_base, &watch, &mut tally, give_up, "json", Leave::Polite).await,
                }
            }
            (n, kind, tally)
        }));
    }
    // Cut one relay's links every second or so.
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut cuts = 0;
    while Instant::now() < churn_until {
        sleep(Duration::from_millis(rng.random_range(500..1500))).await;
        relays[rng.random_range(0..relays.len())].cut_current();
        cuts += 1;
    }
    stop.store(true, Ordering::SeqCst);

    reporter.abort();
    let outcomes = Publisher::finish_all(publishers, Duration::from_secs(180)).await;
    let ops = &outcomes.ops;
    let rest = RestClient::new(&base).unwrap();
    let mut ledger = Ledger::default();
    for (i, watch) in rooms.iter().enumerate() {
        let events = history(&rest, &watch.room).await;
        ledger.check(&ops[&i], &events);
        watch.target.store(events.last().map_or(0, |(seq, _)| *seq), Ordering::SeqCst);
    }
    let mut by_kind: [Totals; 4] = Default::default();
    let mut unclean = Vec::new();
    for client in clients {
        let (n, kind, tally) = client.await.unwrap();
        let watch = &rooms[n % rooms.len()];
        if !tally.clean(watch.target.load(Ordering::SeqCst)) {
            unclean.push(format!("{} client {n} (kind {kind}): {tally:?}", watch.room));
        }
        by_kind[kind].add(&tally);
    }
    let relayed: usize = relays.iter().map(Link::opened).sum();
    println!(
        "\n== drill churn (seed {}): {} clients over {} rooms for {} s, sessions up to {} ms, relay cuts {cuts} \
         ({relayed} relayed links)\n  {}\n  {}\n  {}\n  {}\n  {}\n  {}\n  whole drill {}",
        config.seed,
        config.clients,
        rooms.len(),
        config.secs,
        config.session_ms,
        ledger.line(),
        outcomes.line(),
        by_kind[0].line("SDK, direct"),
        by_kind[1].line("SDK, through cut relays"),
        by_kind[2].line("raw binary"),
        by_kind[3].line("raw JSON"),
        secs(started.elapsed())
    );
    outcomes.assert_none_stuck();
    ledger.assert_sound();
    assert!(unclean.is_empty(), "streams with gaps, holes or duplicates:\n{}", unclean.join("\n"));
    drop(relays);
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// Drill 3: D1, R2 and KV failing during flushes.

/// What the stores show for a room: (newest snapshot seq in D1 with its R2 object, D1 room index
/// seq, KV read model seq).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stores {
    snapshot: Option<u64>,
    index: Option<u64>,
    kv: Option<u64>,
}

impl Stores {
    async fn read(server: &Server, room: &str) -> Self {
        let snapshots: Vec<edgeroom_protocol::SnapshotRecord> = server
            .admin_get(ADMIN_KEY, &format!("/v1/admin/t/acme/rooms/{room}/snapshots"))
            .await
            .json()
            .await
            .expect("snapshots");
        let latest = snapshots.first();
        assert!(latest.is_none_or(|s| s.in_r2), "the newest indexed snapshot is in R2: {latest:?}");
        let rooms: Vec<edgeroom_protocol::RoomRecord> =
            server.admin_get(ADMIN_KEY, "/v1/admin/t/acme/rooms").await.json().await.expect("rooms");
        let read_model = reqwest::get(server.http_url(&format!("/v1/t/acme/rooms/{room}"))).await.unwrap();
        let from_kv = read_model.headers().get("x-edgeroom-source").is_some_and(|s| s == "kv");
        let kv_seq = read_model.headers().get("x-edgeroom-seq").and_then(|s| s.to_str().ok()?.parse().ok());
        Self {
            snapshot: latest.map(|s| s.seq),
            index: rooms.iter().find(|r| r.room == room).map(|r| r.seq),
            kv: if from_kv { kv_seq } else { None },
        }
    }

    fn at_least(&self, seq: u64) -> bool {
        [self.snapshot, self.index, self.kv].iter().all(|s| s.is_some_and(|s| s >= seq))
    }
}

/// Waits until every store of `room` shows `seq` or later; returns how long that took since
/// `since`.
async fn caught_up(server: &Server, room: &str, seq: u64, since: Instant, limit: Duration) -> Duration {
    let mut stores = Stores::read(server, room).await;
    while !stores.at_least(seq) {
        assert!(since.elapsed() < limit, "{room}: the stores never caught up with seq {seq}: {stores:?}");
        sleep(Duration::from_millis(100)).await;
        stores = Stores::read(server, room).await;
    }
    since.elapsed()
}

async fn set_faults(server: &Server, room: &str, fail: &[&str]) {
    let path = format!("/v1/admin/t/acme/rooms/{room}/faults");
    let response = server.admin_post(ADMIN_KEY, &path, json!({"fail": fail})).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

/// The room's count of failed flushes, from its live metrics.
async fn failed_flushes(server: &Server, room: &str) -> u64 {
    let metrics: Value = server
        .admin_get(ADMIN_KEY, &format!("/v1/admin/t/acme/rooms/{room}/metrics"))
        .await
        .json()
        .await
        .unwrap_or_default();
    fn find(value: &Value) -> Option<u64> {
        match value {
            Value::Object(map) => {
                map.get("flushes_failed").and_then(Value::as_u64).or_else(|| map.values().find_map(find))
            }
            _ => None,
        }
    }
    find(&metrics["live"]).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_flush_faults_lose_nothing_and_the_flush_catches_up() {
    let config = Config::from_env();
    let started = Instant::now();
    let mut vars = BASE_VARS.to_vec();
    vars.extend([
        ("FLUSH_INTERVAL_MS", "1000"),
        ("SNAPSHOT_INTERVAL_MS", "1000"),
        ("READ_MODEL_MIN_READS", "0"),
        ("ALLOW_FAULT_INJECTION", "yes"),
    ]);
    let mut server = Server::start_on_with_vars(StateDir::new(), &vars).await;
    let base = server.http_url("");
    let mut restarted = None;
    let rooms: Vec<Watch> = (0..config.rooms.min(2))
        .map(|i| Watch { room: format!("flush-{i}"), target: Arc::new(AtomicU64::new(u64::MAX)) })
        .collect();
    let give_up = Instant::now() + Duration::from_secs(config.fault_secs * 4 + 240);
    let subscribers: Vec<_> = rooms
        .iter()
        .map(|watch| tokio::spawn(steady_subscriber(base.clone(), watch.clone(), None, give_up)))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for (i, watch) in rooms.iter().enumerate() {
        let rate = (config.rate / 2).max(1);
        publishers.push((i, Publisher::start(&base, &watch.room, 0, rate, None, stop.clone()).await));
    }
    // The first flush of each room, before any fault.
    sleep(Duration::from_millis(500)).await;
    for watch in &rooms {
        caught_up(&server, &watch.room, 1, Instant::now(), Duration::from_secs(30)).await;
    }

    let mut phases = Vec::new();
    for fail in [&["r2"][..], &["d1"], &["kv"], &["r2", "d1", "kv"]] {
        for watch in &rooms {
            set_faults(&server, &watch.room, fail).await;
        }
        // A flush that started before the switch may still land.
        sleep(Duration::from_secs(1)).await;
        let mut before = Vec::new();
        for watch in &rooms {
            before.push(Stores::read(&server, &watch.room).await);
        }
        let failed_before = failed_flushes(&server, &rooms[0].room).await;
        // Publishing goes on while the store fails. While all three fail, the runtime is also
        // SIGKILLed half-way: the unflushed changes and the switch are in the rooms' storage.
        let all = fail.len() == 3;
        if all {
            sleep(Duration::from_secs(config.fault_secs).mul_f64(0.5)).await;
            let down = Instant::now();
            server.kill_and_restart().await;
            restarted = Some(down.elapsed());
            sleep(Duration::from_secs(config.fault_secs).mul_f64(0.5)).await;
        } else {
            sleep(Duration::from_secs(config.fault_secs)).await;
        }
        let (mut heal_seqs, mut behind) = (Vec::new(), Vec::new());
        for (watch, before) in rooms.iter().zip(&before) {
            let during = Stores::read(&server, &watch.room).await;
            // What the flush order (R2, then D1, then KV; recorded only when all three worked)
            // allows to move while `fail` fails.
            let stalled = match fail {
                ["kv"] => during.kv == before.kv,
                _ => during == *before,
            };
            assert!(
                stalled,
                "{}: with {fail:?} failing the stores moved: {before:?} -> {during:?}",
                watch.room
            );
            let seq = history(&RestClient::new(&base).unwrap(), &watch.room).await.last().map_or(0, |e| e.0);
            heal_seqs.push(seq);
            behind.push(
                seq - [during.snapshot, during.index, during.kv]
                    .iter()
                    .map(|s| s.unwrap_or(0))
                    .min()
                    .unwrap_or(0),
            );
        }
        let failed = failed_flushes(&server, &rooms[0].room).await.saturating_sub(failed_before);
        let healed = Instant::now();
        for watch in &rooms {
            set_faults(&server, &watch.room, &[]).await;
        }
        let mut catch_up = Vec::new();
        for (watch, seq) in rooms.iter().zip(&heal_seqs) {
            catch_up.push(caught_up(&server, &watch.room, *seq, healed, Duration::from_secs(60)).await);
        }
        phases.push(format!(
            "{:<8} failing {} s{}: {failed} failed flushes in {}, stores behind by {behind:?} seqs at the heal, \
             all caught up {} after it",
            fail.join("+"),
            config.fault_secs,
            if all { " (and a SIGKILL + restart half-way)" } else { "" },
            rooms[0].room,
            catch_up.iter().map(|d| secs(*d)).collect::<Vec<_>>().join(" / ")
        ));
    }

    stop.store(true, Ordering::SeqCst);
    let outcomes = Publisher::finish_all(publishers, Duration::from_secs(120)).await;
    let ops = &outcomes.ops;
    let rest = RestClient::new(&base).unwrap();
    let mut ledger = Ledger::default();
    let mut finals = Vec::new();
    for (i, watch) in rooms.iter().enumerate() {
        let events = history(&rest, &watch.room).await;
        ledger.check(&ops[&i], &events);
        let last = events.last().map_or(0, |(seq, _)| *seq);
        watch.target.store(last, Ordering::SeqCst);
        // In the end every store holds the room's last seq.
        let waited = caught_up(&server, &watch.room, last, Instant::now(), Duration::from_secs(60)).await;
        let stores = Stores::read(&server, &watch.room).await;
        assert_eq!(
            stores,
            Stores { snapshot: Some(last), index: Some(last), kv: Some(last) },
            "{}",
            watch.room
        );
        finals.push(format!("{} at seq {last} after {}", watch.room, secs(waited)));
    }
    let mut totals = Totals::default();
    let mut unclean = Vec::new();
    for (watch, subscriber) in rooms.iter().zip(subscribers) {
        let tally = subscriber.await.unwrap();
        if !tally.clean(watch.target.load(Ordering::SeqCst)) {
            unclean.push(format!("{}: {tally:?}", watch.room));
        }
        totals.add(&tally);
    }
    println!(
        "\n== drill flush: {} rooms, publishing {}/s each, faults of {} s, restart {:?}\n  {}\n  final flush: {}\n  {}\n  {}\n  {}\n  \
         whole drill {}",
        rooms.len(),
        (config.rate / 2).max(1),
        config.fault_secs,
        restarted.map(secs),
        phases.join("\n  "),
        finals.join(", "),
        ledger.line(),
        outcomes.line(),
        totals.line("SDK subscribers"),
        secs(started.elapsed())
    );
    outcomes.assert_none_stuck();
    ledger.assert_sound();
    assert_eq!(ledger.unacked, 0, "a flush failure must not fail a publish");
    assert!(unclean.is_empty(), "streams with gaps, holes or duplicates:\n{}", unclean.join("\n"));
    server.stop();
}
