//! The room state machine: connections join and leave, frames become stored events, and the
//! frames to send wait in the outbox until the shell takes them.
//!
//! Everything here is synchronous and pure apart from the [`Sql`] storage, so native tests cover
//! it on a real SQLite database. The object shell feeds it socket events and sends what
//! [`Room::take_outgoing`] returns.

use edgeroom_protocol::{
    close_code, Ack, Body, ClientMessage, ErrorCode, ErrorFrame, Event, EventKind, Format, Gap, Hello,
    HistoryPage, Ping, Pong, PresenceSet, Publish, PublishRequest, PublishResult, Right, RoomView,
    ServerMessage, StateDelete, StateSet, Welcome, WireFrame, MAX_SEQ,
};
use uuid::Uuid;

use crate::cadence::{fingerprint, Cadence, Copies, Decision, Observed, ReadDemand, ReadModelWrite, Written};
use crate::export::{ExportFilter, ExportKind};
use crate::outbox::{Outbox, Outgoing};
use crate::peers::Peers;
use crate::presence::PendingPresence;
use crate::recent_ops::RecentOps;
use crate::store::StateSize;
use crate::{
    ApiError, ConnectOptions, Connection, Limits, Metrics, RestoreSource, RoomLive, RoomStore, Snapshot, Sql,
    StoreError, StoredEvent,
};

/// The persistent sequence that numbers connections.
const CONNECTION_IDS: &str = "connection";

/// The persistent floor below which seqs are never handed out (set by a restore).
const SEQ_FLOOR: &str = "seq_floor";

/// Where releases before the copies record kept the seq of the newest snapshot (read only).
const FLUSHED_SEQ: &str = "flushed_seq";

/// Meta key of what the shared stores hold of the room ([`Copies`]).
const COPIES_META: &str = "copies";

/// Meta key of the room's saved metrics.
const METRICS_META: &str = "metrics";

/// Meta key of the metrics at the last metrics series row (the base of the next one).
const METRICS_BASE_META: &str = "metrics_base";

/// Meta key of the room's epoch.
const EPOCH_META: &str = "epoch";

/// History is trimmed once every this many events, not on every append.
const TRIM_EVERY: u64 = 64;

/// What one flush of a room writes, as the [`Cadence`] decided: any of a snapshot (R2, with its
/// D1 rows), the index row alone (D1) and the read model (KV).
#[derive(Debug)]
pub struct FlushPlan {
    /// The JSON read model (KV) and what the index row (D1) shows.
    pub view: RoomView,
    /// The snapshot (R2), with its snapshot, index and metrics series rows (D1).
    pub snapshot: Option<Snapshot>,
    /// The index row alone: its members or epoch changed between snapshots.
    pub index: bool,
    /// The read model write (KV), if any.
    pub read_model: Option<ReadModelWrite>,
    /// Stores whose writes fail on purpose (test builds only), comma-separated.
    pub faults: String,
    /// The room's change count when the plan was taken.
    pub generation: u64,
    /// The room's cumulative metrics (saved with the flush).
    pub totals: Metrics,
    /// The activity since the previous metrics series row (written with the snapshot).
    pub since: Metrics,
    /// When the plan was taken.
    pub taken_ms: u64,
    /// What the index row shows beside the snapshot, as written.
    pub index_fingerprint: u64,
    /// The read model, as written.
    pub view_fingerprint: u64,
}

/// The outcome of a flush check: what to write now, and when to check again.
#[derive(Debug, Default)]
pub struct FlushCheck {
    /// What to write now (`None`: nothing is due).
    pub plan: Option<FlushPlan>,
    /// When to check again if nothing else happens (`None`: every copy is current).
    pub next_ms: Option<u64>,
}

/// One room: its storage, its limits, its connections and the frames waiting to be sent.
///
/// Every cache here can be rebuilt from storage and socket attachments, because the runtime may
/// drop Rust memory at any time (hibernation, eviction, a deploy).
pub struct Room<S> {
    store: RoomStore<S>,
    limits: Limits,
    peers: Peers,
    outbox: Outbox,
    last_seq: Option<u64>,
    state_size: Option<StateSize>,
    /// Presence changed, or a snapshot was restored, since the last flush check (memory only:
    /// presence is not sequenced, and the next event flushes anyway).
    unflushed_change: bool,
    /// An operator or a restore asked for a snapshot now (memory only).
    snapshot_requested: bool,
    /// When the room copies itself to R2, D1 and KV.
    cadence: Cadence,
    /// What the shared stores hold of the room, once read from storage.
    copies: Option<Copies>,
    /// REST reads that reached the room (KV misses), for the read model's cadence.
    demand: ReadDemand,
    /// The seq this instance last saw, when it saw it change, and when the first change the
    /// snapshots do not hold was seen (memory only; a new instance reads the newest event's time).
    observed: Option<Observation>,
    /// Counts unflushed changes, so a change made while a flush was writing is not marked flushed.
    change_generation: u64,
    /// The current epoch, once read from storage.
    epoch: Option<String>,
    /// Randomness for new epochs, from the shell (the core has no random source of its own).
    entropy: u64,
    /// What the room counted, apart from storage rows (those come from the [`Sql`] counts).
    metrics: Metrics,
    /// The metrics recorded at the last flush, to report the activity since.
    flushed_metrics: Metrics,
    /// The totals last saved to storage (see [`Room::keep_metrics`]).
    kept_metrics: Metrics,
    /// What the tenant exports (from its webhook endpoints; set by the shell).
    export_filter: ExportFilter,
    /// The export cursor as last read or written (see `room_export.rs`).
    export_cursor: Option<u64>,
    /// The time of the latest event handled, for events that carry no time of their own.
    clock_ms: u64,
    /// Recently applied op ids, loaded from history on first use.
    ops: Option<RecentOps>,
    /// Presence changes merged until the next presence frame.
    presence: PendingPresence,
}

impl<S: Sql> Room<S> {
    /// Opens the room over its SQL storage, creating tables on first use. `entropy` is a random
    /// number from the shell, used to name new epochs.
    pub fn open(sql: S, limits: Limits, entropy: u64) -> Result<Self, StoreError> {
        let cadence = Cadence::new(&limits);
        Self {
            store: RoomStore::open(sql)?,
            limits,
            peers: Peers::default(),
            outbox: Outbox::default(),
            last_seq: None,
            state_size: None,
            unflushed_change: false,
            snapshot_requested: false,
            cadence,
            copies: None,
            demand: ReadDemand::default(),
            observed: None,
            change_generation: 0,
            epoch: None,
            entropy,
            metrics: Metrics::default(),
            flushed_metrics: Metrics::default(),
            kept_metrics: Metrics::default(),
            export_filter: ExportFilter::default(),
            export_cursor: None,
            clock_ms: 0,
            ops: None,
            presence: PendingPresence::default(),
        }
        .with_saved_metrics()
    }

    fn with_saved_metrics(mut self) -> Result<Self, StoreError> {
        if let Some(json) = self.store.meta(METRICS_META)? {
            // Metrics are advisory: unreadable saved ones start afresh rather than fail the room.
            self.metrics = serde_json::from_str(&json).unwrap_or_default();
            self.flushed_metrics = self.metrics.clone();
            self.kept_metrics = self.metrics.clone();
        }
        if let Some(json) = self.store.meta(METRICS_BASE_META)? {
            self.flushed_metrics = serde_json::from_str(&json).unwrap_or_else(|_| self.metrics.clone());
            // While sockets carry the counts the totals are saved only with snapshots, as the
            // base: it may be the newer of the two.
            self.metrics.merge_carried(&self.flushed_metrics.carried());
            self.kept_metrics = self.metrics.clone();
        }
        Ok(self)
    }

    /// Everything the room counted (storage rows included), cumulative across restarts up to
    /// the last flush.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.metrics.clone();
        let counts = self.store.counts();
        metrics.rows_read += counts.rows_read;
        metrics.rows_written += counts.rows_written;
        metrics
    }

    /// Saves the totals when anything but storage rows moved since the last save: a flush check
    /// that writes nothing calls it, so counts made between flushes survive hibernation and
    /// eviction (one storage row per such check).
    pub fn keep_metrics(&mut self) -> Result<(), StoreError> {
        let totals = self.metrics();
        if !totals.moved_beyond_rows(&self.kept_metrics) {
            return Ok(());
        }
        let json = serde_json::to_string(&totals).map_err(|_| StoreError::BadRow("metrics"))?;
        self.store.set_meta(METRICS_META, &json)?;
        self.kept_metrics = totals;
        Ok(())
    }

    /// The counts the shell adds (requests, frames sent, flush results).
    pub fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }

    /// The room's epoch: a random id that names its history. `seq` numbers are only comparable
    /// within one epoch; a room whose history is re-created from a snapshot starts a new one.
    pub fn epoch(&mut self) -> Result<String, StoreError> {
        if let Some(epoch) = &self.epoch {
            return Ok(epoch.clone());
        }
        let epoch = match self.store.meta(EPOCH_META)? {
            Some(epoch) => epoch,
            None => self.start_new_epoch()?,
        };
        self.epoch = Some(epoch.clone());
        Ok(epoch)
    }

    /// Starts and stores a new epoch.
    fn start_new_epoch(&mut self) -> Result<String, StoreError> {
        self.entropy = splitmix64(self.entropy);
        let epoch = format!("{:016x}", self.entropy);
        self.store.set_meta(EPOCH_META, &epoch)?;
        self.epoch = Some(epoch.clone());
        Ok(epoch)
    }

    /// The room's storage.
    pub fn store(&self) -> &RoomStore<S> {
        &self.store
    }

    /// The room's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A new connection: gives it a never-reused id and, unless it waits for `hello`, queues its
    /// `welcome` (plus the replay or `gap` for `resume_from`) and tells the members it joined.
    /// Returns the connection to keep in the socket attachment.
    pub fn connect(&mut self, options: ConnectOptions, now_ms: u64) -> Result<Connection, StoreError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let id = self.store.next_in_sequence(CONNECTION_IDS)?;
        let connection = Connection {
            id,
            format: options.format,
            user: options.user,
            presence: None,
            live: false,
            rights: options.rights,
            counts: Vec::new(),
        };
        self.peers.insert(connection.clone(), &self.limits, now_ms);
        self.metrics.connections(self.peers.iter().count());
        if options.await_hello {
            return Ok(connection);
        }
        if let Err(error) = self.go_live(id, options.resume_from, options.resume_epoch) {
            self.peers.remove(id);
            return Err(error);
        }
        Ok(self.connection(id).unwrap_or(connection))
    }

    /// Re-registers a connection found on a socket after the object woke up.
    pub fn restore_connection(&mut self, mut connection: Connection, now_ms: u64) {
        // Counts the socket carried through hibernation (see `carrier_attachment`).
        self.metrics.merge_carried(&std::mem::take(&mut connection.counts));
        self.peers.insert(connection, &self.limits, now_ms);
    }

    /// Whether a socket can carry the room's counts ([`Room::carrier_attachment`]; the shell
    /// writes them into one after every turn), so they need no storage row until it closes.
    fn has_carriers(&self) -> bool {
        self.peers.iter().next().is_some()
    }

    /// Connection `id`'s data with the room's counts so far, for its socket's attachment: the
    /// counts survive hibernation there without a storage write (see [`Room::restore_connection`]).
    pub fn carrier_attachment(&self, id: u64) -> Option<Connection> {
        let mut connection = self.connection(id)?;
        connection.counts = self.metrics().carried();
        Some(connection)
    }

    /// Whether the room knows connection `id`.
    pub fn has_connection(&self, id: u64) -> bool {
        self.peers.contains(id)
    }

    /// The current data of connection `id`.
    pub fn connection(&self, id: u64) -> Option<Connection> {
        self.peers.get(id).map(|peer| peer.connection.clone())
    }

    /// The connection is gone (closed, errored or dropped): the members learn that it left.
    pub fn disconnect(&mut self, id: u64) {
        if let Some(peer) = self.peers.remove(id) {
            if peer.connection.in_presence() {
                self.presence.left(id);
                self.mark_changed();
                self.export_or_log(ExportKind::PresenceLeave, Some(&peer.connection));
            }
            if peer.connection.live && self.peers.live_ids_except(None).is_empty() {
                self.export_or_log(ExportKind::RoomVacated, None);
            }
        }
    }

    /// Queues a presence export; a storage failure costs that export, never the room.
    fn export_or_log(&mut self, kind: ExportKind, connection: Option<&Connection>) {
        if self.export_presence(kind, connection).is_err() {
            self.metrics.refused(ErrorCode::Internal);
        }
    }

    /// Records activity of connection `id` seen by the runtime (an auto-answered `ping`).
    pub fn touch(&mut self, id: u64, at_ms: u64) {
        if let Some(peer) = self.peers.get_mut(id) {
            peer.admission.touch(at_ms);
        }
    }

    /// Connections silent for longer than the heartbeat timeout.
    pub fn silent_connections(&self, now_ms: u64) -> Vec<u64> {
        self.peers
            .iter()
            .filter(|peer| peer.admission.is_silent(&self.limits, now_ms))
            .map(|peer| peer.connection.id)
            .collect()
    }

    /// The form frames to connection `id` use.
    pub fn format_of(&self, id: u64) -> Option<Format> {
        self.peers.get(id).map(|peer| peer.connection.format)
    }

    /// Number of connections.
    pub fn connection_count(&self) -> usize {
        self.peers.iter().count()
    }

    /// Handles one frame from connection `id`. Returns the connection's new data when its
    /// attachment must be saved (its presence or form changed).
    pub fn handle_frame(&mut self, id: u64, frame: &WireFrame, now_ms: u64) -> Option<Connection> {
        self.metrics.frame_in(frame.len());
        self.clock_ms = self.clock_ms.max(now_ms);
        let peer = self.peers.get_mut(id)?;
        let mut changed = false;
        if peer.connection.format != frame.format() {
            // Frames to a connection follow the form its client last sent.
            peer.connection.format = frame.format();
            changed = true;
        }
        let admitted = peer.admission.admit(frame.len(), &self.limits, now_ms);
        match admitted.and_then(|()| ClientMessage::decode(frame).map_err(ApiError::from)) {
            Ok(message) => changed |= self.handle(id, message, now_ms),
            Err(refusal) => {
                // A frame over the rate still names its operation, so the client can tell which
                // op to retry later (too large frames are not decoded at all).
                let op_id = (refusal.code == ErrorCode::RateLimited)
                    .then(|| ClientMessage::decode(frame).ok().and_then(|message| message.op_id()))
                    .flatten();
                self.refuse_frame(id, refusal, op_id, now_ms);
            }
        }
        changed.then(|| self.connection(id)).flatten()
    }

    /// Moves the room's clock to `now_ms` (the shell's time when it sends).
    pub fn advance_clock(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }

    /// How long until the waiting presence changes may be sent, if any wait.
    pub fn presence_wait_ms(&self, now_ms: u64) -> Option<u64> {
        self.presence.wait_ms(now_ms, self.limits.presence_interval_ms)
    }

    /// Events queued and not yet taken.
    pub fn pending_events(&self) -> usize {
        self.outbox.pending_events()
    }

    /// Whether frames wait to be sent.
    pub fn has_outgoing(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Takes every frame waiting to be sent, in order, after writing the events they carry:
    /// nothing leaves the object before it is stored (the runtime holds the frames until the
    /// write is durable). If the write fails, the frames are dropped and every connection is
    /// closed instead; clients resume from what was stored and re-send what was not acknowledged.
    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        if let Err(error) = self.persist() {
            tracing::error!(%error, "writing events failed; closing every connection");
        }
        let (interval, members) = (self.limits.presence_interval_ms, self.peers.presence_ids_except(None));
        if let Some((diff, recipients)) = self.presence.take_due(self.clock_ms, interval, members) {
            if !recipients.is_empty() {
                self.outbox.push(diff.into(), recipients);
            }
        }
        let outgoing = self.outbox.take();
        self.metrics.outgoing(&outgoing);
        outgoing
    }

    /// A server-side publish (REST): stored and broadcast like a client's, with no sender.
    pub fn publish_from_server(
        &mut self,
        request: PublishRequest,
        now_ms: u64,
    ) -> Result<PublishResult, ApiError> {
        let PublishRequest { body, op_id, topic } = request;
        let seq = self.apply_publish(None, Publish { op_id, body, topic }, now_ms)?;
        // The answer must not leave before the event is stored.
        self.persist()?;
        Ok(PublishResult { seq, op_id })
    }

    /// Up to `limit` events after `after`, with the room's current and oldest kept seq.
    pub fn history(&mut self, after: u64, limit: u64) -> Result<HistoryPage, StoreError> {
        let events = self
            .store
            .events_page(after, limit, self.limits.history_page_max_bytes)?
            .into_iter()
            .map(|stored| stored.event)
            .collect();
        Ok(HistoryPage {
            events,
            seq: self.last_seq()?,
            epoch: self.epoch()?,
            oldest: self.store.oldest_seq()?,
        })
    }

    /// The room's current state and members, as REST readers and the KV read model see it.
    pub fn view(&mut self, tenant: &str, room: &str, now_ms: u64) -> Result<RoomView, StoreError> {
        let state = self.store.state_entries()?.into_iter().map(|entry| (entry.key, entry.value)).collect();
        Ok(RoomView {
            tenant: tenant.to_owned(),
            room: room.to_owned(),
            seq: self.last_seq()?,
            epoch: self.epoch()?,
            state,
            members: self.peers.members(),
            generated_ms: now_ms,
        })
    }

    /// The room's current sequence number.
    pub fn seq(&mut self) -> Result<u64, StoreError> {
        self.last_seq()
    }

    /// Remembers the room's names (the object only learns them from the router's requests).
    pub fn remember_names(&self, tenant: &str, room: &str) -> Result<(), StoreError> {
        if self.store.meta("tenant")?.as_deref() != Some(tenant) {
            self.store.set_meta("tenant", tenant)?;
            self.store.set_meta("room", room)?;
        }
        Ok(())
    }

    /// The room's names, once a router request told them.
    pub fn names(&self) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.store.meta("tenant")?.zip(self.store.meta("room")?))
    }

    /// The injected flush faults (tests only; see `object::Faults`).
    pub fn faults(&self) -> Result<String, StoreError> {
        Ok(self.store.meta("faults")?.unwrap_or_default())
    }

    /// Sets the injected flush faults, a comma-separated list of stores.
    pub fn set_faults(&self, list: &str) -> Result<(), StoreError> {
        self.store.set_meta("faults", list)
    }

    /// Whether the room's storage is empty (a new object, or one whose storage was wiped).
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        self.store.is_empty()
    }

    /// The room as a snapshot: its state, its sequences and up to `max_events` recent events.
    /// With `base` (the snapshot at [`Room::snapshot_base_seq`], read back from R2) only the
    /// events after it are read from storage: a snapshot then costs rows for what changed, not
    /// for the whole history it carries. Any other `base` is ignored.
    pub fn snapshot(
        &mut self,
        tenant: &str,
        room: &str,
        max_events: u64,
        now_ms: u64,
        base: Option<Snapshot>,
    ) -> Result<Snapshot, StoreError> {
        let seq = self.last_seq()?;
        let oldest_wanted = seq.saturating_sub(max_events);
        let base_seq = self.snapshot_base_seq()?;
        let base = base.filter(|base| {
            Some(base.seq) == base_seq && base.seq <= seq && base.tenant == tenant && base.room == room
        });
        let events = match base {
            Some(base) => {
                // History only grows at the end and is trimmed at the start: what the base holds
                // and storage still keeps is unchanged since.
                let oldest_kept = self.store.oldest_seq()?.unwrap_or(u64::MAX);
                let mut events: Vec<StoredEvent> = base
                    .events
                    .into_iter()
                    .filter(|stored| stored.event.seq > oldest_wanted && stored.event.seq >= oldest_kept)
                    .collect();
                let newer =
                    self.store.events_after(base.seq.max(oldest_wanted), seq.saturating_sub(base.seq))?;
                events.extend(newer);
                events
            }
            None => self.store.events_after(oldest_wanted, max_events)?,
        };
        Ok(Snapshot {
            tenant: tenant.to_owned(),
            room: room.to_owned(),
            seq,
            created_ms: now_ms,
            state: self.store.state_entries()?,
            events,
            sequences: self.store.sequences()?,
        })
    }

    /// The seq of the newest snapshot this storage wrote in the current epoch: the next snapshot
    /// can start from it. `None` after a restore (a new epoch) or before the first snapshot.
    pub fn snapshot_base_seq(&mut self) -> Result<Option<u64>, StoreError> {
        let epoch = self.epoch()?;
        let copies = self.copies()?;
        Ok((copies.snapshot_seq > 0 && copies.snapshot_ms > 0 && copies.snapshot_epoch == epoch)
            .then_some(copies.snapshot_seq))
    }

    /// Replaces the room's history and state with a snapshot's and starts a new epoch (events
    /// after the snapshot may have been lost, so old `seq` numbers no longer name the same
    /// events). Sequence numbers and connection ids keep counting from the highest ever seen;
    /// every live connection gets a fresh `welcome` and a `gap`.
    pub fn restore_snapshot(&mut self, snapshot: Snapshot) -> Result<(), StoreError> {
        let seq_before = self.last_seq()?;
        self.store.replace_room(&snapshot.events)?;
        self.ops = None;
        for entry in &snapshot.state {
            self.store.put_state(&entry.key, &entry.value, entry.seq)?;
        }
        for (name, value) in &snapshot.sequences {
            let current = self.store.sequence(name)?;
            self.store.set_sequence(name, current.max(*value))?;
        }
        let seq = seq_before.max(snapshot.seq);
        self.store.set_sequence(SEQ_FLOOR, seq)?;
        self.start_new_epoch()?;
        self.last_seq = Some(seq);
        self.state_size = None;
        self.mark_changed();
        // The restored room (a new epoch) is snapshotted at the next check.
        self.snapshot_requested = true;
        for id in self.peers.live_ids_except(None) {
            let welcome = self.welcome(id)?;
            self.outbox.push(welcome, vec![id]);
            self.outbox.push(Gap { resume_from: seq, seq }.into(), vec![id]);
        }
        Ok(())
    }

    /// What a flush check writes now, as the [`Cadence`] decides from what the shared stores hold
    /// ([`Copies`]) and what the room is: a snapshot, the index row, the read model, or nothing
    /// yet (with the time to check again). Nothing is written while the room does not know its
    /// names.
    pub fn flush_plan(&mut self, now_ms: u64, base: Option<Snapshot>) -> Result<FlushCheck, StoreError> {
        let (decision, index_fingerprint, view_fingerprint) = self.decide_copies(now_ms)?;
        let names = if decision.writes() { self.names()? } else { None };
        let Some((tenant, name)) = names else {
            // Checked: presence changes are now weighed by their fingerprints.
            self.unflushed_change = false;
            if !self.has_carriers() {
                self.keep_metrics()?;
            }
            return Ok(FlushCheck { plan: None, next_ms: decision.next_ms });
        };
        let view = self.view(&tenant, &name, now_ms)?;
        let snapshot = if decision.snapshot {
            Some(self.snapshot(&tenant, &name, self.limits.snapshot_max_events, now_ms, base)?)
        } else {
            None
        };
        let totals = self.metrics();
        let since = totals.since(&self.flushed_metrics);
        let plan = FlushPlan {
            view,
            snapshot,
            index: decision.index,
            read_model: decision.read_model,
            faults: self.faults()?,
            generation: self.change_generation,
            totals,
            since,
            taken_ms: now_ms,
            index_fingerprint,
            view_fingerprint,
        };
        Ok(FlushCheck { plan: Some(plan), next_ms: decision.next_ms })
    }

    /// The seq of the snapshot to read back before a flush check at `now_ms`: the check will
    /// take a snapshot, and the newest one can be its base ([`Room::snapshot`]).
    pub fn snapshot_base_for_check(&mut self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        if !self.decide_copies(now_ms)?.0.snapshot {
            return Ok(None);
        }
        self.snapshot_base_seq()
    }

    /// What the [`Cadence`] says is due at `now_ms`, with the fingerprints of what the index
    /// row and the read model would show.
    fn decide_copies(&mut self, now_ms: u64) -> Result<(Decision, u64, u64), StoreError> {
        let observed = self.observe(now_ms)?;
        let seq = self.last_seq()?;
        let epoch = self.epoch()?;
        let members = self.peers.members();
        let members_json = serde_json::to_vec(&members).unwrap_or_default();
        let index_fingerprint =
            fingerprint([(members.len() as u64).to_le_bytes().as_slice(), epoch.as_bytes()]);
        let view_fingerprint = fingerprint([seq.to_le_bytes().as_slice(), epoch.as_bytes(), &members_json]);
        let now = Observed {
            now_ms,
            seq,
            pending_since_ms: observed.pending_since_ms.unwrap_or(now_ms),
            last_change_ms: observed.last_change_ms,
            forced: self.snapshot_requested,
            index_fingerprint,
            view_fingerprint,
        };
        let copies = self.copies()?.clone();
        let store = &self.store;
        let decision = self
            .cadence
            .decide(&copies, &self.demand, &now, || store.body_bytes_after(copies.snapshot_seq))?;
        Ok((decision, index_fingerprint, view_fingerprint))
    }

    /// What the shared stores hold of the room (read once from storage).
    fn copies(&mut self) -> Result<&mut Copies, StoreError> {
        let copies = match self.copies.take() {
            Some(copies) => copies,
            None => match self.store.meta(COPIES_META)? {
                Some(json) => serde_json::from_str(&json).map_err(|_| StoreError::BadRow("room copies"))?,
                None => Copies::legacy(self.store.sequence(FLUSHED_SEQ)?),
            },
        };
        Ok(self.copies.insert(copies))
    }

    /// Notes the room's seq at `now_ms`: when it moved, and since when the snapshots miss a change.
    fn observe(&mut self, now_ms: u64) -> Result<Observation, StoreError> {
        let seq = self.last_seq()?;
        let snapshot_seq = self.copies()?.snapshot_seq;
        let mut observed = match self.observed {
            Some(previous) if previous.seq == seq => previous,
            Some(previous) => Observation { seq, last_change_ms: now_ms, ..previous },
            None => {
                // A new instance: the last change is the newest stored event's, and the
                // snapshots miss changes since the first event after the newest one (so
                // `SNAPSHOT_INTERVAL_MS` does not start again at every wake-up).
                let stored_at = |after: u64| -> Result<Option<u64>, StoreError> {
                    let first = self.store.events_after(after, 1)?;
                    Ok(first.first().map(|stored| stored.at_ms.min(now_ms)))
                };
                let at = stored_at(seq.saturating_sub(1))?.unwrap_or(now_ms);
                let pending_since_ms = if seq > snapshot_seq { stored_at(snapshot_seq)? } else { None };
                Observation { seq, last_change_ms: at, pending_since_ms }
            }
        };
        if seq == snapshot_seq {
            observed.pending_since_ms = None;
        } else if observed.pending_since_ms.is_none() {
            observed.pending_since_ms = Some(observed.last_change_ms);
        }
        self.observed = Some(observed);
        Ok(observed)
    }

    /// Something happened (an event, presence): notes it, and returns the time the alarm must
    /// fire by when that is sooner than the ordinary check (a KV copy to keep current, many
    /// events waiting for a snapshot). Reads no storage once the room is open.
    pub fn note_change(&mut self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        let before = self.observed.map(|observed| observed.seq);
        let observed = self.observe(now_ms)?;
        if before == Some(observed.seq) && !self.unflushed_change {
            return Ok(None);
        }
        let copies = self.copies()?.clone();
        let pending = observed.seq.saturating_sub(copies.snapshot_seq);
        Ok(self.cadence.wake_by(&copies, &self.demand, now_ms, pending))
    }

    /// A REST reader missed the KV read model and reached the room: a read mark. Returns the
    /// time the alarm must fire by when the room now wants its read model in KV.
    pub fn mark_read(&mut self, now_ms: u64) -> Result<Option<u64>, StoreError> {
        self.demand.mark(&self.cadence, now_ms);
        let copies = self.copies()?.clone();
        if copies.has_read_model(now_ms) || !self.demand.is_hot(&self.cadence, now_ms) {
            return Ok(None);
        }
        Ok(self.cadence.wake_by(&copies, &self.demand, now_ms, 0))
    }

    /// Brings back a room whose storage was empty from what the index and snapshot store said:
    /// `Ok(Some(seq))` when a snapshot was restored, `Ok(None)` for a new room, `Err` with the
    /// reason when the room existed but could not be restored (it must refuse requests).
    pub fn restore_from(&mut self, source: RestoreSource) -> Result<Option<u64>, String> {
        match source {
            RestoreSource::NewRoom => Ok(None),
            RestoreSource::Unavailable(reason) => Err(reason),
            RestoreSource::Snapshot(snapshot) => {
                let seq = snapshot.seq;
                self.restore_snapshot(*snapshot).map(|()| Some(seq)).map_err(|e| e.to_string())
            }
        }
    }

    /// Whether the room changed since its last flush check (a new event, presence, a restore) or
    /// holds events its snapshots do not.
    pub fn needs_flush(&mut self) -> Result<bool, StoreError> {
        let seq = self.last_seq()?;
        let snapshot_seq = self.copies()?.snapshot_seq;
        Ok(self.unflushed_change || self.snapshot_requested || seq != snapshot_seq)
    }

    /// Records what a flush wrote of `plan` (each part on its own). Changes made after `plan`
    /// was taken (while its writes were in flight) stay unflushed.
    pub fn flushed(&mut self, plan: &FlushPlan, written: Written) -> Result<(), StoreError> {
        if self.change_generation == plan.generation {
            self.unflushed_change = false;
        }
        let copies = self.copies()?;
        if let (true, Some(snapshot)) = (written.snapshot, &plan.snapshot) {
            copies.snapshotted(snapshot.seq, plan.taken_ms, plan.index_fingerprint);
            copies.snapshot_epoch.clone_from(&plan.view.epoch);
        }
        if written.index {
            copies.indexed(plan.index_fingerprint);
        }
        if let (true, Some(write)) = (written.read_model, plan.read_model) {
            copies.read_model_written(write, plan.taken_ms, plan.view_fingerprint);
        }
        let copies_json = serde_json::to_string(copies).map_err(|_| StoreError::BadRow("room copies"))?;
        self.store.set_meta(COPIES_META, &copies_json)?;
        let json = serde_json::to_string(&plan.totals).map_err(|_| StoreError::BadRow("metrics"))?;
        if !self.has_carriers() {
            self.store.set_meta(METRICS_META, &json)?;
            self.kept_metrics = plan.totals.clone();
        }
        if written.snapshot && plan.snapshot.is_some() {
            self.snapshot_requested = false;
            // The metrics series row went with the snapshot: the next one counts from here.
            self.store.set_meta(METRICS_BASE_META, &json)?;
            self.flushed_metrics = plan.totals.clone();
            if let Some(observed) = self.observed.as_mut() {
                observed.pending_since_ms = None;
            }
        }
        Ok(())
    }

    /// Whether the room changed after `plan` was taken (while its writes were in flight).
    pub fn changed_since(&mut self, plan: &FlushPlan) -> Result<bool, StoreError> {
        Ok(self.change_generation != plan.generation || self.last_seq()? != plan.view.seq)
    }

    /// Makes the next flush write a snapshot even when nothing changed (an operator's "flush now").
    pub fn request_flush(&mut self) {
        self.snapshot_requested = true;
        self.mark_changed();
    }

    /// The room's live state for operators.
    pub fn live(&mut self, now_ms: u64) -> Result<RoomLive, StoreError> {
        let metrics = self.metrics();
        Ok(RoomLive {
            seq: self.last_seq()?,
            epoch: self.epoch()?,
            connections: self.connection_count(),
            members: self.peers.members(),
            units: crate::pricing::Units::of(&metrics),
            metrics,
            generated_ms: now_ms,
        })
    }

    /// Closes connection `id` on an operator's request (close code 4013); `false` if unknown.
    pub fn kick(&mut self, id: u64) -> bool {
        if !self.peers.contains(id) {
            return false;
        }
        self.outbox.close(id, close_code::KICKED, "closed by an operator".to_owned());
        true
    }

    /// Closes every connection (close code 4014); returns how many.
    pub fn close_all(&mut self) -> usize {
        let ids: Vec<u64> = self.peers.iter().map(|peer| peer.connection.id).collect();
        for id in &ids {
            self.outbox.close(*id, close_code::ROOM_CLOSED, "the room was closed by an operator".to_owned());
        }
        ids.len()
    }

    fn mark_changed(&mut self) {
        self.unflushed_change = true;
        self.change_generation = self.change_generation.wrapping_add(1);
    }

    /// Dispatches a decoded message; returns whether the connection's data changed.
    fn handle(&mut self, id: u64, message: ClientMessage, now_ms: u64) -> bool {
        let Some(connection) = self.peers.get(id).map(|peer| &peer.connection) else { return false };
        let (live, rights) = (connection.live, connection.rights);
        let op_id = message.op_id();
        let needed = match &message {
            ClientMessage::Publish(_) | ClientMessage::StateSet(_) | ClientMessage::StateDelete(_) => {
                Some(Right::Write)
            }
            ClientMessage::PresenceSet(_) => Some(Right::Presence),
            ClientMessage::Hello(_)
            | ClientMessage::Ping(_)
            | ClientMessage::CounterAdd(_)
            | ClientMessage::CounterSet(_)
            | ClientMessage::CounterReset(_) => None,
        };
        let result = match message {
            ClientMessage::Hello(hello) => self.hello(id, hello, live, now_ms).map(|changed| (changed, None)),
            _ if !live => Err(ApiError::bad_request("send `hello` first")),
            _ if needed.is_some_and(|right| !rights.has(right)) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this connection lacks the `{}` right", needed.map_or("", Right::as_str)),
            )),
            ClientMessage::Publish(publish) => {
                self.apply_publish(Some(id), publish, now_ms).map(|seq| (false, Some(seq)))
            }
            ClientMessage::StateSet(set) => self.state_set(id, set, now_ms).map(|seq| (false, Some(seq))),
            ClientMessage::StateDelete(delete) => {
                self.state_delete(id, delete, now_ms).map(|seq| (false, Some(seq)))
            }
            ClientMessage::PresenceSet(presence) => {
                self.presence_set(id, presence).map(|changed| (changed, None))
            }
            ClientMessage::Ping(Ping { nonce }) => {
                self.outbox.push(Pong { nonce }.into(), vec![id]);
                Ok((false, None))
            }
            ClientMessage::CounterAdd(_) | ClientMessage::CounterSet(_) | ClientMessage::CounterReset(_) => {
                Err(ApiError::new(ErrorCode::UnknownType, "counter operations go to a counter socket"))
            }
        };
        match result {
            Ok((changed, seq)) => {
                // Every applied (or already applied) operation is acknowledged with its seq.
                if let (Some(op_id), Some(seq)) = (op_id, seq) {
                    self.outbox.push(Ack { op_id, seq }.into(), vec![id]);
                }
                changed
            }
            Err(ApiError { code, message }) => {
                self.metrics.refused(code);
                self.outbox.push(ErrorFrame { code, message, op_id }.into(), vec![id]);
                false
            }
        }
    }

    fn hello(&mut self, id: u64, hello: Hello, live: bool, now_ms: u64) -> Result<bool, ApiError> {
        if hello.resume_from.is_some_and(|seq| seq > MAX_SEQ) {
            return Err(ApiError::bad_request(format!("resume_from is at most {MAX_SEQ}")));
        }
        if live {
            // A refresh: the current welcome, no replay (the connection has every event already).
            // It costs the connection's send budget, so refreshes cannot queue without bound.
            let cost = self.state_size()?.bytes + self.peers.iter().count() * 128 + 256;
            let limits = &self.limits;
            let affordable =
                self.peers.get_mut(id).is_some_and(|peer| peer.admission.spend(cost, limits, now_ms));
            if !affordable {
                let reason =
                    "over the send budget (welcome refreshes); reconnect later and resume".to_owned();
                self.outbox.close(id, close_code::SEND_BUDGET, reason);
                return Ok(false);
            }
            let welcome = self.welcome(id)?;
            self.outbox.push(welcome, vec![id]);
            return Ok(false);
        }
        self.go_live(id, hello.resume_from, hello.epoch)?;
        Ok(true)
    }

    /// Sends the welcome and the resume replay (or gap) to `id`, then makes it a member.
    fn go_live(
        &mut self,
        id: u64,
        resume_from: Option<u64>,
        resume_epoch: Option<String>,
    ) -> Result<(), StoreError> {
        if let Some(peer) = self.peers.get_mut(id) {
            peer.connection.live = true;
        }
        let welcome = self.welcome(id)?;
        let seq = self.last_seq()?;
        self.outbox.push(welcome, vec![id]);
        if let Some(resume_from) = resume_from {
            self.replay(id, resume_from, resume_epoch.as_deref(), seq)?;
        }
        if self.peers.live_ids_except(None).len() == 1 {
            self.export_presence(ExportKind::RoomOccupied, None)?;
        }
        if let Some(connection) = self.connection(id).filter(Connection::in_presence) {
            self.presence.joined(connection.member());
            self.mark_changed();
            self.export_presence(ExportKind::PresenceJoin, Some(&connection))?;
        }
        Ok(())
    }

    fn welcome(&mut self, id: u64) -> Result<ServerMessage, StoreError> {
        let sees_presence = self.peers.get(id).is_some_and(|peer| peer.connection.in_presence());
        if sees_presence {
            self.presence.welcomed(id);
        }
        Ok(Welcome {
            connection_id: id,
            seq: self.last_seq()?,
            members: if sees_presence { self.peers.members() } else { Vec::new() },
            state: self.store.state_entries()?,
            epoch: self.epoch()?,
        }
        .into())
    }

    /// Queues every event in `(resume_from, seq]` for `id`, or a `gap` when history cannot: it
    /// no longer holds them, or `resume_from` counts in another epoch.
    fn replay(
        &mut self,
        id: u64,
        resume_from: u64,
        resume_epoch: Option<&str>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let same_epoch = match resume_epoch {
            Some(epoch) => epoch == self.epoch()?,
            None => true,
        };
        if resume_from == seq && same_epoch {
            return Ok(());
        }
        let covered = same_epoch
            && resume_from < seq
            && self.store.oldest_seq()?.is_some_and(|oldest| oldest <= resume_from.saturating_add(1))
            && self.store.body_bytes_after(resume_from)? <= self.limits.replay_max_bytes as u64;
        if !covered {
            self.outbox.push(Gap { resume_from, seq }.into(), vec![id]);
            return Ok(());
        }
        for stored in self.store.events_after(resume_from, seq - resume_from)? {
            self.outbox.push_event(
                stored.event,
                vec![id],
                self.limits.batch_max_events,
                self.limits.batch_max_bytes,
            );
        }
        Ok(())
    }

    /// Stores a message event (once per `op_id`) and returns its seq.
    fn apply_publish(&mut self, sender: Option<u64>, publish: Publish, now_ms: u64) -> Result<u64, ApiError> {
        let Publish { op_id, body, topic } = publish;
        self.clock_ms = self.clock_ms.max(now_ms);
        if topic.as_ref().is_some_and(|topic| topic.len() > self.limits.topic_max_bytes) {
            let message = format!("topics are at most {} bytes", self.limits.topic_max_bytes);
            return Err(ApiError::bad_request(message));
        }
        if let Some(seq) = self.seq_of(op_id)? {
            return Ok(seq);
        }
        let event = Event { seq: 0, kind: EventKind::Message, body, sender, topic, key: None };
        Ok(self.append(event, op_id, now_ms)?.seq)
    }

    fn state_set(&mut self, id: u64, set: StateSet, now_ms: u64) -> Result<u64, ApiError> {
        let StateSet { op_id, key, value } = set;
        let limits = &self.limits;
        self.check_state_key(&key)?;
        if value.len() > limits.state_max_value_bytes {
            let message = format!("state values are at most {} bytes", limits.state_max_value_bytes);
            return Err(ApiError::new(ErrorCode::TooLarge, message));
        }
        if let Some(seq) = self.seq_of(op_id)? {
            return Ok(seq);
        }
        let size = self.state_size()?;
        let existing = self.store.state_entry_bytes(&key)?;
        let keys_after = size.keys + usize::from(existing == 0);
        let bytes_after = size.bytes - existing.min(size.bytes) + key.len() + value.len();
        if keys_after > self.limits.state_max_keys {
            let message = format!("the room already has {} state keys", self.limits.state_max_keys);
            return Err(ApiError::new(ErrorCode::LimitExceeded, message));
        }
        if bytes_after > self.limits.state_max_bytes {
            let message = format!("the room's state would exceed {} bytes", self.limits.state_max_bytes);
            return Err(ApiError::new(ErrorCode::LimitExceeded, message));
        }
        let event = Event {
            seq: 0,
            kind: EventKind::StateSet,
            body: value,
            sender: Some(id),
            topic: None,
            key: Some(key),
        };
        let event = self.append(event, op_id, now_ms)?;
        if let Some(key) = &event.key {
            self.store.put_state(key, &event.body, event.seq)?;
        }
        // The state row and its event are stored in the same turn.
        self.persist()?;
        self.state_size = Some(StateSize { keys: keys_after, bytes: bytes_after });
        Ok(event.seq)
    }

    fn state_delete(&mut self, id: u64, delete: StateDelete, now_ms: u64) -> Result<u64, ApiError> {
        let StateDelete { op_id, key } = delete;
        self.check_state_key(&key)?;
        if let Some(seq) = self.seq_of(op_id)? {
            return Ok(seq);
        }
        let existing = self.store.state_entry_bytes(&key)?;
        let event = Event {
            seq: 0,
            kind: EventKind::StateDelete,
            body: Body::null(),
            sender: Some(id),
            topic: None,
            key: Some(key),
        };
        let event = self.append(event, op_id, now_ms)?;
        if let Some(key) = &event.key {
            self.store.delete_state(key)?;
        }
        self.persist()?;
        if existing > 0 {
            self.state_size = self.state_size.map(|size| StateSize {
                keys: size.keys.saturating_sub(1),
                bytes: size.bytes.saturating_sub(existing),
            });
        }
        Ok(event.seq)
    }

    fn check_state_key(&self, key: &str) -> Result<(), ApiError> {
        let max = self.limits.state_max_key_bytes;
        if key.is_empty() || key.len() > max {
            return Err(ApiError::bad_request(format!("state keys are 1 to {max} bytes")));
        }
        Ok(())
    }

    /// Replaces the presence data of `id` and tells every member; returns whether it changed.
    fn presence_set(&mut self, id: u64, presence: PresenceSet) -> Result<bool, ApiError> {
        if presence.data.len() > self.limits.presence_max_bytes {
            let message = format!("presence data is at most {} bytes", self.limits.presence_max_bytes);
            return Err(ApiError::new(ErrorCode::TooLarge, message));
        }
        let Some(peer) = self.peers.get_mut(id) else { return Ok(false) };
        peer.connection.presence = Some(presence.data.as_str().to_owned());
        let member = peer.connection.member();
        self.presence.updated(member);
        self.mark_changed();
        Ok(true)
    }

    /// The seq of the event an operation already produced, if it was applied within the
    /// dedup window (`OP_DEDUP_WINDOW_MS`).
    fn seq_of(&mut self, op_id: Option<Uuid>) -> Result<Option<u64>, StoreError> {
        let Some(op_id) = op_id else { return Ok(None) };
        Ok(self.recent_ops()?.get(&op_id.to_string()))
    }

    fn recent_ops(&mut self) -> Result<&mut RecentOps, StoreError> {
        let window = self.limits.op_dedup_window_ms;
        let ops = match self.ops.take() {
            Some(ops) => ops,
            None => {
                let since = self.clock_ms.saturating_sub(window);
                let recent = self.store.recent_ops(since, crate::recent_ops::MAX_RECENT_OPS as u64)?;
                RecentOps::load(window, recent)
            }
        };
        Ok(self.ops.insert(ops))
    }

    /// Writes the appended events. If that fails they are gone: forget what was derived from
    /// them and close every connection, whose clients resume from what is stored.
    fn persist(&mut self) -> Result<(), StoreError> {
        let written = self.store.persist();
        if written.is_err() {
            self.last_seq = None;
            self.ops = None;
            self.outbox.discard();
            let ids: Vec<u64> = self.peers.iter().map(|peer| peer.connection.id).collect();
            for id in ids {
                self.outbox.close(
                    id,
                    close_code::INTERNAL,
                    "storing events failed; reconnect and resume".to_owned(),
                );
            }
        }
        written
    }

    /// Stores `event` under the next sequence number, then queues it for every live connection.
    /// Only a stored event advances the sequence.
    fn append(&mut self, mut event: Event, op_id: Option<Uuid>, now_ms: u64) -> Result<Event, StoreError> {
        let seq = self.last_seq()?.checked_add(1).ok_or(StoreError::BadRow("sequence exhausted"))?;
        event.seq = seq;
        let op_id = op_id.map(|id| id.to_string());
        if let (Some(op_id), Some(ops)) = (&op_id, self.ops.as_mut()) {
            ops.insert(op_id.clone(), seq, now_ms);
        }
        self.store.append(StoredEvent { event: event.clone(), op_id, at_ms: now_ms })?;
        self.metrics.events += 1;
        self.last_seq = Some(seq);
        if seq % TRIM_EVERY == 0 {
            let min_at_ms = now_ms.saturating_sub(self.limits.history_max_age_ms);
            let keep_after = if self.export_filter.is_empty() { u64::MAX } else { self.exported_seq()? };
            self.store.trim_history(seq, self.limits.history_max_events, min_at_ms, keep_after)?;
        }
        let (max_events, max_bytes) = (self.limits.batch_max_events, self.limits.batch_max_bytes);
        self.outbox.push_event(event.clone(), self.peers.live_ids_except(None), max_events, max_bytes);
        Ok(event)
    }

    /// Queues an `error` for a refused frame and closes connections that keep sending bad ones.
    fn refuse_frame(&mut self, id: u64, refusal: ApiError, op_id: Option<uuid::Uuid>, now_ms: u64) {
        let ApiError { code, message } = refusal;
        self.metrics.refused(code);
        self.outbox.push(ErrorFrame { code, message, op_id }.into(), vec![id]);
        let Some(peer) = self.peers.get_mut(id) else {
            return;
        };
        if let Some((close, reason)) = peer.admission.strike(code, &self.limits, now_ms) {
            self.outbox.close(id, close, reason);
        }
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        if let Some(seq) = self.last_seq {
            return Ok(seq);
        }
        let seq = self.store.last_seq()?;
        self.last_seq = Some(seq);
        Ok(seq)
    }

    fn state_size(&mut self) -> Result<StateSize, StoreError> {
        if let Some(size) = self.state_size {
            return Ok(size);
        }
        let size = self.store.state_size()?;
        self.state_size = Some(size);
        Ok(size)
    }
}

/// What a room instance saw of its seq (memory only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Observation {
    seq: u64,
    last_change_ms: u64,
    pending_since_ms: Option<u64>,
}

/// One step of the splitmix64 generator: spreads the shell's entropy into epoch ids.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[path = "room_export.rs"]
mod export;
pub use export::ExportPlan;

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
