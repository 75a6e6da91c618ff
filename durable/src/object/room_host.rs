//! What a room object holds at run time — the open [`Room`], its sockets, its timers — and the
//! carrying out of what the room and the [`Schedule`] decide: sending frames, setting the alarm,
//! flushing, restoring.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use edgeroom_protocol::{close_code, Format, RoomAddress, ServerMessage};
use worker::{Env, State, WebSocket};

use super::flush::{base_snapshot, write_flush, Faults};
use super::http::{arm_alarm, auto_response_ms, close, entropy, now_ms, send_shared, SharedFrame};
use super::WorkerSql;
use crate::{
    ApiError, Connection, Limits, Outgoing, RestoreGate, Room, Schedule, SendDecision, Timers, Waiting,
};

/// The room object's run-time state, shared with the tasks it spawns (send timers, alarms).
pub struct RoomHost {
    pub state: State,
    pub env: Env,
    pub limits: Limits,
    pub schedule: Schedule,
    /// Opened on first use; rebuilt from storage and socket attachments after a wake-up.
    room: RefCell<Option<Room<WorkerSql>>>,
    /// The accepted sockets by connection id.
    sockets: RefCell<HashMap<u64, WebSocket>>,
    /// When the send timer is due, if one runs: it sends the queued events (they wait a little
    /// to coalesce) and the merged presence changes (at most one frame per presence interval).
    send_due_ms: Cell<Option<u64>>,
    /// When frames last left, to send at once in a room that was quiet.
    last_send_ms: Cell<u64>,
    /// The socket whose attachment carries the room's counts (see [`RoomHost::carry_counts`]).
    carrier: Cell<Option<u64>>,
    pub timers: Cell<Timers>,
    pub gate: RefCell<RestoreGate>,
    /// The names this instance learned from the router, stored once.
    pub address: RefCell<Option<RoomAddress>>,
    /// Event export's run-time state.
    pub export: super::exporter::ExportState,
}

impl RoomHost {
    /// A host for a freshly constructed object.
    pub fn new(state: State, env: Env, limits: Limits) -> Self {
        let schedule = Schedule::new(&limits);
        Self {
            state,
            env,
            limits,
            schedule,
            room: RefCell::new(None),
            sockets: RefCell::new(HashMap::new()),
            send_due_ms: Cell::new(None),
            last_send_ms: Cell::new(0),
            carrier: Cell::new(None),
            timers: Cell::new(Timers::default()),
            gate: RefCell::new(RestoreGate::default()),
            address: RefCell::new(None),
            export: Default::default(),
        }
    }

    /// Runs `f` on the room, opening it (and finding its sockets) if the object just woke up.
    /// Never held across an `.await`.
    pub fn with_room<T>(
        &self,
        f: impl FnOnce(&mut Room<WorkerSql>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut slot = self.room.try_borrow_mut().map_err(|_| ApiError::internal("the room is busy"))?;
        if slot.is_none() {
            let sql = WorkerSql::new(self.state.storage().sql());
            let mut room = Room::open(sql, self.limits.clone(), entropy())?;
            let now = now_ms();
            let mut registry = self.sockets.borrow_mut();
            for socket in self.state.get_websockets() {
                if let Ok(Some(connection)) = socket.deserialize_attachment::<Connection>() {
                    registry.insert(connection.id, socket);
                    room.restore_connection(connection, now);
                }
            }
            tracing::info!(sockets = registry.len(), "room opened");
            *slot = Some(room);
        }
        match slot.as_mut() {
            Some(room) => f(room),
            None => Err(ApiError::internal("the room could not be opened")),
        }
    }

    /// Writes the room's counts into one socket's attachment so that what it counted since its
    /// last save survives hibernation (no storage write): the socket `preferred` (the one whose
    /// frame this turn handled), else the last carrier, else any. Another socket may still hold
    /// older counts; the newest win when the room opens again. Returns the connection whose
    /// attachment was written (its data is current too), if one was.
    pub fn carry_counts(&self, preferred: Option<u64>) -> Option<u64> {
        let carrier = {
            let sockets = self.sockets.borrow();
            [preferred, self.carrier.get()]
                .into_iter()
                .flatten()
                .find(|id| sockets.contains_key(id))
                .or_else(|| sockets.keys().next().copied())
                .and_then(|id| Some((id, sockets.get(&id)?.clone())))
        };
        // (Opening the room registers sockets: no borrow of them may be held here.)
        let (id, socket) = carrier?;
        let attachment = self.with_room(|room| Ok(room.carrier_attachment(id))).ok()??;
        match socket.serialize_attachment(&attachment) {
            Ok(()) => {
                self.carrier.set(Some(id));
                Some(id)
            }
            Err(error) => {
                tracing::warn!(connection = id, %error, "carrying the counts failed");
                None
            }
        }
    }

    /// Registers an accepted socket.
    pub fn add_socket(&self, id: u64, socket: WebSocket) {
        self.sockets.borrow_mut().insert(id, socket);
    }

    /// The connection id of a socket, re-registering the socket if this instance did not know it.
    pub fn connection_id(&self, ws: &WebSocket) -> Option<u64> {
        let connection = ws.deserialize_attachment::<Connection>().ok()??;
        let id = connection.id;
        if !self.with_room(|room| Ok(room.has_connection(id))).ok()? {
            self.with_room(|room| {
                room.restore_connection(connection, now_ms());
                Ok(())
            })
            .ok()?;
            self.sockets.borrow_mut().insert(id, ws.clone());
        }
        Some(id)
    }

    /// A socket closed or failed: its connection leaves the room.
    pub fn forget(self: &Rc<Self>, ws: &WebSocket) {
        if let Ok(Some(connection)) = ws.deserialize_attachment::<Connection>() {
            self.drop_connection(connection.id);
            self.after_event();
            // The socket may have carried the counts: another one does now, or, with nobody
            // left, storage (one row, when the room empties).
            if self.sockets.borrow().is_empty() {
                if let Err(error) = self.with_room(|room| Ok(room.keep_metrics()?)) {
                    tracing::warn!(%error, "saving the room's counts failed");
                }
            } else {
                self.carry_counts(None);
            }
        }
    }

    fn drop_connection(&self, id: u64) {
        self.sockets.borrow_mut().remove(&id);
        let _ = self.with_room(|room| {
            room.disconnect(id);
            Ok(())
        });
    }

    /// Carries out what an event asks: send the queued frames now or after the batch delay,
    /// and make sure a changed room gets flushed.
    pub fn after_event(self: &Rc<Self>) {
        // A wake-up sweeps for silent sockets once in a while: in a room with traffic that
        // spares the sweep's own alarms.
        if self.timers.get().sweep_due(&self.schedule, now_ms()) {
            self.drop_silent_connections();
            return;
        }
        self.plan_send();
        // A KV copy to keep current, or many events waiting for a snapshot, may want the check
        // sooner than it is armed (memory only once the room is open).
        if let Ok(Some(by)) = self.with_room(|room| Ok(room.note_change(now_ms())?)) {
            self.check_by(by);
        }
        // With a check coming within an interval there is nothing to decide: skip the storage
        // reads that deciding costs on every event.
        let soon = now_ms().saturating_add(self.schedule.flush_interval_ms());
        let timers = self.timers.get();
        if timers.due_ms().is_some_and(|due| due <= soon) {
            return;
        }
        let (changed, export) =
            self.with_room(|room| Ok((room.needs_flush()?, room.needs_export()?))).unwrap_or((false, false));
        // Export batches leave within an interval even while the copies' cadence waits longer.
        if export {
            self.check_by(soon);
        } else if changed && !timers.is_armed() {
            self.check_by(now_ms().saturating_add(self.schedule.first_check_ms()));
        }
    }

    /// Makes sure the flush check comes by `at_ms`, moving the alarm when it was later.
    pub fn check_by(self: &Rc<Self>, at_ms: u64) {
        let mut timers = self.timers.get();
        if let Some(due) = timers.due_by(at_ms) {
            self.timers.set(timers);
            let host = Rc::clone(self);
            worker::wasm_bindgen_futures::spawn_local(async move { host.arm_alarm(due).await });
        }
    }

    /// Makes sure the alarm fires by `at_ms`.
    pub async fn arm_alarm(&self, at_ms: u64) {
        arm_alarm(&self.state, at_ms).await;
    }

    /// Sets the alarm where the timers want it: the due flush or the next sweep.
    pub async fn rearm(&self) {
        let connected = self.with_room(|room| Ok(room.connection_count() > 0)).unwrap_or(false);
        if let Some(at) = self.timers.get().next_alarm(&self.schedule, now_ms(), connected) {
            self.arm_alarm(at).await;
        }
    }

    /// Checks what a changed room copies to the shared stores and writes what the cadence says
    /// is due (a snapshot to R2 with its D1 rows, the D1 index row, the KV read model). Each part
    /// written is recorded; a failure keeps the rest unrecorded, so it is decided again after the
    /// backoff. Returns whether every write that was due succeeded.
    pub async fn flush(&self) -> bool {
        let mut timers = self.timers.get();
        timers.start_flush();
        let mut counted = crate::Metrics::default();
        // A snapshot due now builds on the last one (read back from R2) instead of reading the
        // whole history from storage.
        let base_seq = self.with_room(|room| Ok(room.snapshot_base_for_check(now_ms())?)).ok().flatten();
        let address = self.address.borrow().clone();
        let base = match (base_seq, address) {
            (Some(seq), Some(address)) => base_snapshot(&self.env, &address, seq, &mut counted).await,
            _ => None,
        };
        let check = match self.with_room(|room| Ok(room.flush_plan(now_ms(), base)?)) {
            Ok(check) => check,
            Err(error) => {
                tracing::error!(%error, "reading the room for the flush failed");
                timers.flush_failed(&self.schedule, now_ms(), None);
                self.timers.set(timers);
                return false;
            }
        };
        let Some(plan) = check.plan else {
            timers.checked(&self.schedule, now_ms(), check.next_ms);
            self.timers.set(timers);
            return true;
        };
        let faults = if Faults::allowed(&self.env) { Faults::parse(&plan.faults) } else { Faults::default() };
        let started = now_ms();
        let (written, result) = write_flush(&self.env, faults, &plan, &mut counted).await;
        counted.flushes_ok = u64::from(result.is_ok());
        counted.flushes_failed = u64::from(result.is_err());
        counted.flush_ms = now_ms().saturating_sub(started);
        let recorded = self.with_room(|room| {
            room.metrics_mut().add(&counted);
            room.flushed(&plan, written)?;
            Ok(room.changed_since(&plan)?)
        });
        let ok = result.is_ok();
        match result {
            Ok(()) => {
                // Changes that came while writing are checked within an interval.
                let next = match recorded {
                    Ok(false) => check.next_ms,
                    _ => Some(check.next_ms.map_or(0, |next| next.min(now_ms()))),
                };
                timers.checked(&self.schedule, now_ms(), next);
            }
            Err(error) => {
                let failures = timers.flush_failed(&self.schedule, now_ms(), check.next_ms);
                tracing::warn!(room = %plan.view.room, failures, %error, "flush failed; backing off");
            }
        }
        self.timers.set(timers);
        ok
    }

    /// Sends what waits now, or makes sure the send timer comes when the [`Schedule`] says.
    fn plan_send(self: &Rc<Self>) {
        let waiting = |room: &mut Room<WorkerSql>| {
            Ok(Waiting {
                frames: room.has_outgoing(),
                events: room.pending_events(),
                presence_wait_ms: room.presence_wait_ms(now_ms()),
            })
        };
        let Ok(now_waiting) = self.with_room(waiting) else { return };
        let since_last_send = now_ms().saturating_sub(self.last_send_ms.get());
        let mut decision = self.schedule.send(now_waiting, since_last_send);
        if decision == SendDecision::Now {
            self.send_queued();
            self.export_if_full();
            // Presence changes may still wait for their interval.
            let Ok(left) = self.with_room(waiting) else { return };
            decision = self.schedule.send(left, 0);
        }
        if let SendDecision::After(delay) = decision {
            self.send_within(delay);
        }
    }

    /// Makes sure the send timer fires within `delay_ms` (one running sooner stands).
    fn send_within(self: &Rc<Self>, delay_ms: u64) {
        let due = now_ms().saturating_add(delay_ms);
        if self.send_due_ms.get().is_some_and(|running| running <= due) {
            return;
        }
        self.send_due_ms.set(Some(due));
        let host = Rc::clone(self);
        worker::wasm_bindgen_futures::spawn_local(async move {
            worker::Delay::from(Duration::from_millis(delay_ms)).await;
            if host.send_due_ms.get() == Some(due) {
                host.send_due_ms.set(None);
            }
            host.send_queued();
            host.export_if_full();
            host.plan_send();
            host.carry_counts(None);
        });
    }

    /// Sends every queued frame, encoding each at most once per form.
    pub fn send_queued(&self) {
        let take = |room: &mut Room<WorkerSql>| {
            room.advance_clock(now_ms());
            Ok(room.take_outgoing())
        };
        while let Ok(outgoing) = self.with_room(take) {
            if outgoing.is_empty() {
                return;
            }
            self.last_send_ms.set(now_ms());
            for item in outgoing {
                match item {
                    Outgoing::Deliver { message, recipients } => self.deliver(&message, &recipients),
                    Outgoing::Close { to, code, reason } => {
                        if let Some(socket) = self.sockets.borrow().get(&to) {
                            close(socket, code, &reason);
                        }
                        self.drop_connection(to);
                    }
                }
            }
        }
    }

    fn deliver(&self, message: &ServerMessage, recipients: &[u64]) {
        let mut encoded: [Option<SharedFrame>; 2] = [None, None];
        let (mut failed, mut sent, mut bytes) = (Vec::new(), 0, 0);
        {
            let Ok(room) = self.room.try_borrow() else { return };
            let Some(room) = room.as_ref() else { return };
            let sockets = self.sockets.borrow();
            for id in recipients {
                let (Some(socket), Some(format)) = (sockets.get(id), room.format_of(*id)) else { continue };
                let slot = match format {
                    Format::Json => &mut encoded[0],
                    Format::Binary => &mut encoded[1],
                };
                let frame = slot.get_or_insert_with(|| SharedFrame::new(&message.encode(format)));
                if send_shared(socket, frame) {
                    sent += 1;
                    bytes += frame.bytes();
                } else {
                    failed.push(*id);
                }
            }
        }
        if let Ok(mut room) = self.room.try_borrow_mut() {
            if let Some(room) = room.as_mut() {
                room.metrics_mut().frames_out(sent, bytes);
            }
        }
        // A socket that cannot take a frame is closed: its client resumes and misses nothing.
        for id in failed {
            if let Some(socket) = self.sockets.borrow().get(&id) {
                close(socket, close_code::INTERNAL, "sending failed; reconnect and resume");
            }
            self.drop_connection(id);
        }
    }

    /// Closes connections that sent nothing, not even a heartbeat `ping`, for too long.
    pub fn drop_silent_connections(self: &Rc<Self>) {
        let mut timers = self.timers.get();
        timers.swept(now_ms());
        self.timers.set(timers);
        let sockets: Vec<(u64, WebSocket)> =
            self.sockets.borrow().iter().map(|(id, ws)| (*id, ws.clone())).collect();
        let silent = self.with_room(|room| {
            for (id, socket) in &sockets {
                if let Some(at) = auto_response_ms(&self.state, socket) {
                    room.touch(*id, at);
                }
            }
            Ok(room.silent_connections(now_ms()))
        });
        for id in silent.unwrap_or_default() {
            if let Some(socket) = self.sockets.borrow().get(&id) {
                close(socket, close_code::HEARTBEAT_TIMEOUT, "no heartbeat");
            }
            self.drop_connection(id);
        }
        self.after_event();
    }
}
