//! What a counter shard object holds at run time and how it carries out what the pure counter
//! modules decide: applying writes, telling subscribers and the home, summing the shards.

use std::cell::{Cell, RefCell};

use edgeroom_protocol::{
    close_code, CounterAddress, CounterValue, CounterView, CounterWriteResult, Format, ServerMessage,
};
use worker::{Env, Request, Response, Result, State, WebSocket, WebSocketPair};

use super::flush::write_counter;
use super::http::{
    arm_alarm, auto_response_ms, close, error_response, internal, now_ms, request_url, require_upgrade,
    send_frame, send_shared, SharedFrame,
};
use super::shards::RemoteShards;
use super::WorkerSql;
use crate::{
    fingerprint, ApiError, Cadence, Counter, CounterState, Limits, Metrics, Observed, ReadDemand, Schedule,
    ShardClient, ShardOp, ShardReport, ShardViews, ShardWrite, Subscriber, Subscribers, Timers, Watch,
};

/// The counter object's run-time state.
pub struct CounterHost {
    pub state: State,
    pub env: Env,
    pub limits: Limits,
    pub schedule: Schedule,
    counter: RefCell<Option<Counter<WorkerSql>>>,
    /// Home only: what the other shards last reported, for live sums.
    pub views: RefCell<ShardViews>,
    /// Home only: the standing of each subscription socket.
    pub subscribers: RefCell<Subscribers>,
    pub timers: Cell<Timers>,
    /// When the counter copies itself to D1 and KV.
    pub cadence: Cadence,
    /// Home only: reads that missed KV (read marks).
    demand: RefCell<ReadDemand>,
    /// Home only: when this instance last saw a change, and the first one D1 does not hold.
    activity: Cell<Activity>,
    /// Home only: what the other shards reported they counted since the home's last flush (it
    /// goes into the next row of the counter's metrics series; memory only).
    pub reported: RefCell<Metrics>,
}

/// When a counter's home last saw a change (memory only).
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    last_change_ms: Option<u64>,
    pending_since_ms: Option<u64>,
}

impl CounterHost {
    /// A host for a freshly constructed object.
    pub fn new(state: State, env: Env, limits: Limits) -> Self {
        let schedule = Schedule::new(&limits);
        let cadence = Cadence::new(&limits);
        Self {
            state,
            env,
            limits,
            schedule,
            counter: RefCell::new(None),
            views: RefCell::new(ShardViews::default()),
            subscribers: RefCell::new(Subscribers::default()),
            timers: Cell::new(Timers::default()),
            cadence,
            demand: RefCell::new(ReadDemand::default()),
            activity: Cell::new(Activity::default()),
            reported: RefCell::new(Metrics::default()),
        }
    }

    /// Counts something into the shard's metrics; counting never fails a request.
    pub fn count(&self, f: impl FnOnce(&mut Metrics)) {
        let _ = self.with(|c| {
            f(c.metrics_mut());
            Ok(())
        });
    }

    /// Writes the shard's counts into a subscription socket's attachment (`socket`, else any), so
    /// what it counted since its last save survives hibernation without a storage write.
    pub fn carry_counts(&self, socket: Option<&WebSocket>) {
        let sockets;
        let socket = match socket {
            Some(socket) => socket,
            None => {
                sockets = self.state.get_websockets();
                let Some(first) = sockets.first() else { return };
                first
            }
        };
        let Ok(Some(mut who)) = socket.deserialize_attachment::<Subscriber>() else { return };
        let Ok(counts) = self.with(|c| Ok(c.metrics().carried())) else { return };
        who.counts = counts;
        if let Err(error) = socket.serialize_attachment(&who) {
            tracing::warn!(subscriber = who.id, %error, "carrying the counts failed");
        }
    }

    /// Saves the shard's metrics when they moved (see [`Counter::keep_metrics`]); never fails the
    /// caller.
    pub fn keep_metrics(&self, address: &CounterAddress) {
        if let Err(error) = self.with(|c| Ok(c.keep_metrics()?)) {
            tracing::warn!(counter = %address, %error, "saving the counter's metrics failed");
        }
    }

    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Counter<WorkerSql>) -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, ApiError> {
        let mut slot =
            self.counter.try_borrow_mut().map_err(|_| ApiError::internal("the counter is busy"))?;
        if slot.is_none() {
            let mut counter = Counter::open(WorkerSql::new(self.state.storage().sql()))?;
            // Counts a subscription socket carried through hibernation (see `carry_counts`).
            for socket in self.state.get_websockets() {
                if let Ok(Some(who)) = socket.deserialize_attachment::<Subscriber>() {
                    counter.metrics_mut().merge_carried(&who.counts);
                }
            }
            *slot = Some(counter);
        }
        let counter = slot.as_mut().ok_or_else(|| ApiError::internal("the counter could not be opened"))?;
        f(counter)
    }

    pub fn remember(&self, address: &CounterAddress, shard: u32) -> std::result::Result<(), ApiError> {
        if self.identity()?.is_none() {
            self.with(|c| Ok(c.remember_identity(address.tenant(), address.name(), shard)?))?;
        }
        Ok(())
    }

    pub fn identity(&self) -> std::result::Result<Option<(CounterAddress, u32)>, ApiError> {
        match self.with(|c| Ok(c.identity()?))? {
            Some((tenant, name, shard)) => Ok(Some((CounterAddress::new(&tenant, &name)?, shard))),
            None => Ok(None),
        }
    }

    pub fn address(&self) -> std::result::Result<Option<CounterAddress>, ApiError> {
        Ok(self.identity()?.map(|(address, _)| address))
    }

    /// Applies one write to this shard, tells the live subscribers (or the home) and schedules
    /// the flush.
    pub async fn apply(
        &self,
        address: &CounterAddress,
        shard: u32,
        write: &ShardWrite,
    ) -> std::result::Result<CounterWriteResult, ApiError> {
        let (state, applied) = self.with(|c| Ok(c.apply(&write.op_id, &write.op, now_ms())?))?;
        if applied {
            if shard == 0 {
                self.broadcast_current(address).await?;
            } else if self.with(|c| Ok(c.watched()?))? {
                let report = ShardReport { shard, value: state.value, version: state.version };
                let home = RemoteShards { env: &self.env, address };
                home.call::<bool>(0, ShardOp::ShardChanged, Some(&report)).await?;
            }
            self.changed().await;
        }
        Ok(CounterWriteResult { shard, value: state.value, version: state.version })
    }

    /// Something changed: a flush check becomes due, sooner when a KV copy must be kept current.
    pub async fn changed(&self) {
        let now = now_ms();
        let mut activity = self.activity.get();
        activity.last_change_ms = Some(now);
        let mut timers = self.timers.get();
        let mut due = timers.changed(&self.schedule, now);
        if let Ok(mut copies) = self.with(|c| Ok(c.copies()?)) {
            if activity.pending_since_ms.is_none() {
                // The first change since the snapshot is stored (one row per snapshot), so the
                // snapshot interval survives hibernation; a later wake-up reads it back.
                if copies.change_seen(now) {
                    if let Err(error) = self.with(|c| Ok(c.set_copies(&copies)?)) {
                        tracing::warn!(%error, "saving when the counter's change began failed");
                    }
                }
                activity.pending_since_ms = copies.pending_since();
            }
            if let Some(by) = self.cadence.wake_by(&copies, &self.demand.borrow(), now, 0) {
                due = timers.due_by(by).or(due);
            }
        }
        activity.pending_since_ms.get_or_insert(now);
        self.activity.set(activity);
        if let Some(due) = due {
            self.timers.set(timers);
            arm_alarm(&self.state, due).await;
        }
    }

    /// A reader missed the KV read model and reached the home: a read mark, which may make the
    /// counter write its read model to KV soon.
    pub async fn read_mark(&self) {
        let now = now_ms();
        self.demand.borrow_mut().mark(&self.cadence, now);
        let Ok(copies) = self.with(|c| Ok(c.copies()?)) else { return };
        if copies.has_read_model(now) {
            return;
        }
        let by = self.cadence.wake_by(&copies, &self.demand.borrow(), now, 0);
        let mut timers = self.timers.get();
        if let Some(due) = by.and_then(|by| timers.due_by(by)) {
            self.timers.set(timers);
            arm_alarm(&self.state, due).await;
        }
    }

    /// Home: checks what the counter copies to D1 (its row) and KV (its read model) and writes
    /// what the cadence says is due. Returns when to check again; an error backs off.
    pub async fn flush(&self, address: &CounterAddress) -> std::result::Result<Option<u64>, ApiError> {
        let view = self.aggregate(address).await?;
        let now = now_ms();
        let copies = self.with(|c| Ok(c.copies()?))?;
        let mut activity = self.activity.get();
        if view.version == copies.snapshot_seq {
            activity.pending_since_ms = None;
        } else if activity.pending_since_ms.is_none() {
            // A check in a fresh instance (the alarm woke it): the stored start of the change.
            activity.pending_since_ms = copies.pending_since();
        }
        let last_change_ms = activity.last_change_ms.unwrap_or(now);
        let view_fingerprint = fingerprint([
            view.value.to_le_bytes().as_slice(),
            &view.version.to_le_bytes(),
            &view.shards.to_le_bytes(),
        ]);
        let observed = Observed {
            now_ms: now,
            seq: view.version,
            pending_since_ms: activity.pending_since_ms.unwrap_or(last_change_ms),
            last_change_ms,
            forced: false,
            // Counters have no index row apart from their D1 row.
            index_fingerprint: copies.index_fingerprint,
            view_fingerprint,
        };
        let decision =
            self.cadence.decide(&copies, &self.demand.borrow(), &observed, || Ok::<_, ApiError>(0))?;
        tracing::debug!(counter = %address, version = view.version, snapshot_seq = copies.snapshot_seq,
            pending_since_ms = observed.pending_since_ms, last_change_ms = observed.last_change_ms,
            snapshot = decision.snapshot, next_ms = ?decision.next_ms, "counter flush check");
        let mut activity_after = activity;
        if decision.snapshot || decision.read_model.is_some() {
            // The metrics series gets a row with each D1 write: what this shard and the others
            // counted since the last one.
            let (totals, mut since) = self.with(|c| Ok(c.metrics_to_save()))?;
            since.add(&self.reported.borrow());
            let mut counted = Metrics::default();
            let (written, result) = write_counter(
                &self.env,
                address,
                &view,
                decision.snapshot,
                decision.read_model,
                &since,
                &mut counted,
            )
            .await;
            counted.flushes_ok = u64::from(result.is_ok());
            counted.flushes_failed = u64::from(result.is_err());
            counted.flush_ms = now_ms().saturating_sub(now);
            self.count(|m| m.add(&counted));
            let mut recorded = copies.clone();
            if written.snapshot {
                recorded.snapshotted(view.version, now, copies.index_fingerprint);
                activity_after.pending_since_ms = None;
                *self.reported.borrow_mut() = Metrics::default();
                if let Err(error) = self.with(|c| Ok(c.saved_metrics(totals)?)) {
                    tracing::warn!(counter = %address, %error, "saving the counter's metrics failed");
                }
            }
            if let (true, Some(write)) = (written.read_model, decision.read_model) {
                recorded.read_model_written(write, now, view_fingerprint);
            }
            if recorded != copies {
                self.with(|c| Ok(c.set_copies(&recorded)?))?;
            }
            result.map_err(internal)?;
        }
        // Changes that came while writing keep their own times.
        let current = self.activity.get();
        if current.last_change_ms == activity.last_change_ms {
            self.activity.set(activity_after);
        }
        Ok(decision.next_ms)
    }

    /// A live subscription: the current value first, then one frame per change.
    pub async fn subscribe(
        &self,
        req: &Request,
        address: &CounterAddress,
        can_write: bool,
    ) -> Result<Response> {
        if let Err(error) = require_upgrade(req) {
            return error_response(&error);
        }
        let format = request_url(req)
            .query_param("format")
            .and_then(|value| Format::from_name(&value))
            .unwrap_or_default();
        let first = self
            .with(|c| Ok(c.shards()? > 1))
            .map(|sharded| sharded && self.state.get_websockets().is_empty());
        let setup = async {
            if first? {
                self.watch_shards(true).await?;
            }
            let view = self.aggregate(address).await?;
            let id = self.with(|c| Ok(c.next_subscriber_id()?))?;
            Ok::<_, ApiError>((view, id))
        };
        let (view, id) = match setup.await {
            Ok(found) => found,
            Err(error) => return error_response(&error),
        };
        let pair = WebSocketPair::new()?;
        self.state.accept_websocket_with_tags(&pair.server, &[format.as_str()]);
        pair.server.serialize_attachment(Subscriber { id, format, can_write, counts: Vec::new() })?;
        let value = CounterValue { name: view.name, value: view.value, version: view.version };
        send_counted(self, &pair.server, format, &value.into())?;
        let connections = self.state.get_websockets().len();
        self.count(|m| m.connections(connections));
        self.changed().await;
        Response::from_websocket(pair.client)
    }

    /// Turns change reports of every other shard on or off.
    pub async fn watch_shards(&self, on: bool) -> std::result::Result<(), ApiError> {
        let (Some(address), shards) = (self.address()?, self.with(|c| Ok(c.shards()?))?) else {
            return Ok(());
        };
        let remote = RemoteShards { env: &self.env, address: &address };
        for shard in 1..shards {
            remote.call::<Watch>(shard, ShardOp::Watch, Some(&Watch { on })).await?;
        }
        Ok(())
    }

    /// Sends the subscribers the counter's current value (the sum over the shards).
    pub async fn broadcast_current(&self, address: &CounterAddress) -> std::result::Result<(), ApiError> {
        if self.state.get_websockets().is_empty() {
            return Ok(());
        }
        let (home, shards) = self.with(|c| Ok((c.get()?, c.shards()?)))?;
        let unknown = self.views.borrow().unknown(shards);
        let remote = RemoteShards { env: &self.env, address };
        for shard in unknown {
            let state = remote.state(shard).await?;
            self.views.borrow_mut().merge(shard, CounterState { value: state.value, version: state.version });
        }
        let Some(sum) = self.views.borrow().sum(home, shards) else { return Ok(()) };
        let message: ServerMessage =
            CounterValue { name: address.name().to_owned(), value: sum.value, version: sum.version }.into();
        let (mut frames, mut bytes) = (0, 0);
        for format in [Format::Json, Format::Binary] {
            let sockets = self.state.get_websockets_with_tag(format.as_str());
            if sockets.is_empty() {
                continue;
            }
            let frame = SharedFrame::new(&message.encode(format));
            for socket in sockets {
                send_shared(&socket, &frame);
                frames += 1;
                bytes += frame.bytes();
            }
        }
        self.count(|m| {
            m.frames_out(frames, bytes);
            m.deliveries += frames as u64;
        });
        Ok(())
    }

    /// The sum over every shard, read now.
    pub async fn aggregate(&self, address: &CounterAddress) -> std::result::Result<CounterView, ApiError> {
        let (home, shards) = self.with(|c| Ok((c.get()?, c.shards()?)))?;
        let remote = RemoteShards { env: &self.env, address };
        let mut states = vec![home];
        for shard in 1..shards {
            let state = remote.state(shard).await?;
            states.push(CounterState { value: state.value, version: state.version });
        }
        let sum = crate::sum_shards(&states).ok_or_else(|| {
            ApiError::new(
                edgeroom_protocol::ErrorCode::LimitExceeded,
                "the sum of the shards overflows a 64-bit counter",
            )
        })?;
        Ok(CounterView {
            tenant: address.tenant().to_owned(),
            name: address.name().to_owned(),
            value: sum.value,
            version: sum.version,
            shards,
            generated_ms: now_ms(),
        })
    }

    /// Closes subscriptions that sent nothing, not even a heartbeat `ping`, for too long.
    pub fn drop_silent_subscribers(&self) {
        let now = now_ms();
        let mut timers = self.timers.get();
        timers.swept(now);
        self.timers.set(timers);
        let mut subscribers = self.subscribers.borrow_mut();
        for socket in self.state.get_websockets() {
            let Ok(Some(who)) = socket.deserialize_attachment::<Subscriber>() else { continue };
            if let Some(at) = auto_response_ms(&self.state, &socket) {
                subscribers.touch(who.id, &self.limits, at);
            }
            if subscribers.is_silent(who.id, &self.limits, now) {
                close(&socket, close_code::HEARTBEAT_TIMEOUT, "no heartbeat");
                subscribers.forget(who.id);
            }
        }
    }
}

/// The shards as the home reaches them: itself directly, the others through their objects.
pub struct HomeShards<'a> {
    pub object: &'a CounterHost,
    pub address: &'a CounterAddress,
}

impl ShardClient for HomeShards<'_> {
    async fn seen(
        &self,
        shard: u32,
        op_id: &str,
    ) -> std::result::Result<Option<CounterWriteResult>, ApiError> {
        if shard != 0 {
            return RemoteShards { env: &self.object.env, address: self.address }.seen(shard, op_id).await;
        }
        let state = self.object.with(|c| Ok(c.recall(op_id)?))?;
        Ok(state.map(|state| CounterWriteResult { shard, value: state.value, version: state.version }))
    }

    async fn write(
        &self,
        shard: u32,
        write: &ShardWrite,
    ) -> std::result::Result<CounterWriteResult, ApiError> {
        if shard != 0 {
            return RemoteShards { env: &self.object.env, address: self.address }.write(shard, write).await;
        }
        self.object.apply(self.address, 0, write).await
    }
}

/// Sends one message to one socket and counts the frame.
pub fn send_counted(
    host: &CounterHost,
    ws: &WebSocket,
    format: Format,
    message: &ServerMessage,
) -> Result<()> {
    let frame = message.encode(format);
    send_frame(ws, &frame);
    host.count(|m| m.frames_out(1, frame.len()));
    Ok(())
}

/// An `error` frame about the connection rather than one operation.
pub fn error_frame(error: ApiError) -> ServerMessage {
    edgeroom_protocol::ErrorFrame { code: error.code, message: error.message, op_id: None }.into()
}
