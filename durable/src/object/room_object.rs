//! `RoomObject`: one Durable Object per `tenant/room`. It accepts hibernatable WebSockets and
//! hands every socket event to [`Room`]; this file only moves bytes between the runtime and the
//! room, and decides when the coalesced frames leave.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use edgeroom_protocol::{
    close_code, ErrorCode, FaultRequest, Format, PublishRequest, RestoreRequest, RestoreResult, Rights,
    RoomAddress, ServerMessage, WireFrame,
};
use worker::js_sys;
use worker::wasm_bindgen::JsCast;
use worker::worker_sys::WebSocketRequestResponsePair;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::stores::write_flush;
use super::{headers, is_websocket_upgrade, json_error, load_snapshot, Faults, Log, RoomOp, WorkerSql};
use crate::{ConnectOptions, Connection, HistoryQuery, Limits, Outgoing, Room};

/// Text frame that the runtime answers with `pong` without waking the object (the heartbeat).
const HEARTBEAT_PING: &str = "ping";
const HEARTBEAT_PONG: &str = "pong";

/// The room Durable Object.
#[durable_object]
pub struct RoomObject {
    inner: Rc<Inner>,
}

/// Everything the object holds, shared with the task that sends coalesced frames later.
struct Inner {
    state: State,
    env: Env,
    log: Log,
    limits: Limits,
    /// Opened on first use; a cache of storage plus the connections found on sockets.
    room: RefCell<Option<Room<WorkerSql>>>,
    /// The accepted sockets by connection id, rebuilt from the runtime after a wake-up.
    sockets: RefCell<HashMap<u64, WebSocket>>,
    flush_scheduled: Cell<bool>,
    /// An alarm is pending for the read-model flush.
    flush_armed: Cell<bool>,
    /// Consecutive failed flushes, for the backoff.
    flush_failures: Cell<u32>,
    /// The room's names were stored by this instance.
    names_saved: Cell<bool>,
}

impl DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        let log = Log::from_env(&env);
        let (limits, warnings) = Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        for warning in warnings {
            log.warn(&warning);
        }
        if let Ok(pair) = WebSocketRequestResponsePair::new(HEARTBEAT_PING, HEARTBEAT_PONG) {
            state.set_websocket_auto_response(&pair);
        }
        let inner = Inner {
            state,
            env,
            log,
            limits,
            room: RefCell::new(None),
            sockets: RefCell::new(HashMap::new()),
            flush_scheduled: Cell::new(false),
            flush_armed: Cell::new(false),
            flush_failures: Cell::new(0),
            names_saved: Cell::new(false),
        };
        Self { inner: Rc::new(inner) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let header = |name: &str| req.headers().get(name).ok().flatten();
        let Some(op) = header(headers::OP).as_deref().and_then(RoomOp::from_name) else {
            return json_error(ErrorCode::NotFound, "unknown room operation");
        };
        let rights = header(headers::RIGHTS).as_deref().and_then(Rights::parse).unwrap_or(Rights::NONE);
        let (tenant, room) =
            (header(headers::TENANT).unwrap_or_default(), header(headers::ROOM).unwrap_or_default());
        if !self.inner.names_saved.get() && !tenant.is_empty() {
            if let Ok(Ok(())) = self.inner.with_room(|r| r.remember_names(&tenant, &room)) {
                self.inner.names_saved.set(true);
            }
            // A wiped or lost object comes back from its latest snapshot before anything else runs.
            let inner = Rc::clone(&self.inner);
            let (t, r) = (tenant.clone(), room.clone());
            self.inner
                .state
                .block_concurrency_while(async move {
                    inner.restore_if_empty(&t, &r).await;
                    Ok(())
                })
                .await?;
        }
        match op {
            RoomOp::Socket => self.accept(&req, rights, header(headers::USER)).await,
            RoomOp::State => {
                let now = now_ms();
                respond(self.inner.with_room(|r| r.view(&tenant, &room, now).map_err(internal)))
            }
            RoomOp::History => {
                let query = match HistoryQuery::from_query(req.url()?.query_pairs()) {
                    Ok(query) => query,
                    Err(message) => return json_error(ErrorCode::BadRequest, &message),
                };
                respond(self.inner.with_room(|r| r.history(query.after, query.limit).map_err(internal)))
            }
            RoomOp::Publish => {
                let mut req = req;
                // serde_json, not the runtime's JSON: bodies are kept as raw JSON text.
                let request: PublishRequest = match serde_json::from_str(&req.text().await?) {
                    Ok(request) => request,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad publish body: {error}"))
                    }
                };
                let now = now_ms();
                let result = self.inner.with_room(|r| r.publish_from_server(request, now));
                Inner::after_event(&self.inner);
                respond(result)
            }
            RoomOp::Restore => {
                let mut req = req;
                let request: RestoreRequest = match serde_json::from_str(&req.text().await?) {
                    Ok(request) => request,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad restore body: {error}"))
                    }
                };
                let Ok(address) = RoomAddress::new(&tenant, &room) else {
                    return json_error(ErrorCode::BadRequest, "unknown room");
                };
                let Some(snapshot) = load_snapshot(&self.inner.env, &address, request.seq).await? else {
                    return json_error(ErrorCode::NotFound, "no such snapshot in the index");
                };
                let restored_seq = snapshot.seq;
                let result = self
                    .inner
                    .with_room(|r| r.restore_snapshot(snapshot).and_then(|()| r.seq()).map_err(internal));
                Inner::after_event(&self.inner);
                respond(result.map(|inner| inner.map(|seq| RestoreResult { restored_seq, seq })))
            }
            RoomOp::Faults => {
                if !Faults::allowed(&self.inner.env) {
                    return json_error(ErrorCode::NotFound, "fault injection is off");
                }
                let mut req = req;
                let request: FaultRequest = match serde_json::from_str(&req.text().await?) {
                    Ok(request) => request,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad faults body: {error}"))
                    }
                };
                let list = request.fail.join(",");
                let result =
                    self.inner.with_room(|r| r.set_faults(&list).map(|()| request).map_err(internal));
                // A cleared fault should not wait out the backoff: retry within one interval.
                self.inner.flush_failures.set(0);
                self.inner.arm_alarm_within(self.inner.limits.flush_interval_ms.max(1000)).await;
                respond(result)
            }
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let inner = &self.inner;
        let Some(id) = inner.connection_id(&ws) else {
            close(&ws, close_code::INTERNAL, "connection state lost; reconnect and resume");
            return Ok(());
        };
        let frame = match message {
            WebSocketIncomingMessage::String(text) => WireFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => WireFrame::Binary(bytes),
        };
        let now = now_ms();
        match inner.with_room(|room| room.handle_frame(id, &frame, now)) {
            Ok(Some(changed)) => {
                if let Err(error) = ws.serialize_attachment(&changed) {
                    inner.log.error(&format!("saving connection {id} failed: {error}"));
                }
            }
            Ok(None) => {}
            Err(message) => close(&ws, close_code::INTERNAL, &message),
        }
        Inner::after_event(inner);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        // Complete the closing handshake; 1005/1006 are reserved and may not be sent back.
        let code = u16::try_from(code).ok().filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006);
        close(&ws, code.unwrap_or(close_code::NORMAL), "closed");
        self.inner.forget(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.inner.forget(&ws);
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let inner = &self.inner;
        inner.flush_armed.set(false);
        inner.flush().await;
        inner.drop_silent_connections();
        inner.ensure_heartbeat_alarm().await;
        Response::ok("ok")
    }
}

impl RoomObject {
    /// Accepts a WebSocket into the room (hibernatable) and queues its welcome.
    async fn accept(&self, req: &Request, rights: Rights, user: Option<String>) -> Result<Response> {
        if !is_websocket_upgrade(req)? {
            return json_error(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
        }
        let mut options = match ConnectOptions::from_query(req.url()?.query_pairs()) {
            Ok(options) => options,
            Err(message) => return json_error(ErrorCode::BadRequest, &message),
        };
        options.user = user;
        options.rights = rights;
        let inner = &self.inner;
        let now = now_ms();
        let connection = match inner.with_room(|room| room.connect(options, now).map_err(|e| e.to_string())) {
            Ok(Ok(connection)) => connection,
            Ok(Err(message)) | Err(message) => {
                inner.log.error(&format!("connect failed: {message}"));
                return json_error(ErrorCode::Internal, &message);
            }
        };
        let pair = WebSocketPair::new()?;
        inner.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(&connection)?;
        inner.sockets.borrow_mut().insert(connection.id, pair.server);
        Inner::after_event(inner);
        inner.ensure_heartbeat_alarm().await;
        Response::from_websocket(pair.client)
    }
}

impl Inner {
    /// Runs `f` on the room, opening it and finding its sockets first if the object just woke up.
    /// Never held across an `.await`.
    fn with_room<T>(&self, f: impl FnOnce(&mut Room<WorkerSql>) -> T) -> std::result::Result<T, String> {
        let mut slot = self.room.try_borrow_mut().map_err(|_| "room is busy".to_owned())?;
        if slot.is_none() {
            let sql = WorkerSql(self.state.storage().sql());
            let entropy = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
            let mut room = Room::open(sql, self.limits.clone(), entropy).map_err(|e| e.to_string())?;
            let sockets = self.state.get_websockets();
            let now = now_ms();
            let mut registry = self.sockets.borrow_mut();
            for socket in sockets {
                if let Ok(Some(connection)) = socket.deserialize_attachment::<Connection>() {
                    registry.insert(connection.id, socket);
                    room.restore_connection(connection, now);
                }
            }
            self.log.info(&format!("room opened with {} connected sockets", registry.len()));
            *slot = Some(room);
        }
        match slot.as_mut() {
            Some(room) => Ok(f(room)),
            None => Err("room could not be opened".to_owned()),
        }
    }

    /// The connection id of a socket, registering the socket if the room did not know it.
    fn connection_id(&self, ws: &WebSocket) -> Option<u64> {
        let connection = ws.deserialize_attachment::<Connection>().ok()??;
        let id = connection.id;
        let known = self.with_room(|room| room.has_connection(id)).ok()?;
        if !known {
            self.with_room(|room| room.restore_connection(connection, now_ms())).ok()?;
            self.sockets.borrow_mut().insert(id, ws.clone());
        }
        Some(id)
    }

    /// A socket closed or failed: its connection leaves the room.
    fn forget(self: &Rc<Self>, ws: &WebSocket) {
        if let Ok(Some(connection)) = ws.deserialize_attachment::<Connection>() {
            self.sockets.borrow_mut().remove(&connection.id);
            let _ = self.with_room(|room| room.disconnect(connection.id));
            Inner::after_event(self);
        }
    }

    /// Sends queued frames now, or soon when events may still coalesce into a bigger batch, and
    /// makes sure a changed room gets flushed.
    fn after_event(self: &Rc<Self>) {
        self.send_soon();
        if !self.flush_armed.get()
            && self.with_room(|room| room.needs_flush()).is_ok_and(|s| s.unwrap_or(false))
        {
            self.flush_armed.set(true);
            let inner = Rc::clone(self);
            let delay = self.limits.flush_interval_ms.max(1000);
            worker::wasm_bindgen_futures::spawn_local(async move { inner.arm_alarm_within(delay).await });
        }
    }

    fn send_soon(self: &Rc<Self>) {
        let Ok((outgoing, events)) = self.with_room(|room| (room.has_outgoing(), room.pending_events()))
        else {
            return;
        };
        if !outgoing {
            return;
        }
        let delay = self.limits.batch_delay_ms;
        if events == 0 || delay == 0 || events >= self.limits.batch_max_events {
            self.send_queued();
        } else if !self.flush_scheduled.replace(true) {
            let inner = Rc::clone(self);
            worker::wasm_bindgen_futures::spawn_local(async move {
                worker::Delay::from(Duration::from_millis(delay)).await;
                inner.flush_scheduled.set(false);
                inner.send_queued();
            });
        }
    }

    /// Makes sure the alarm fires within `delay_ms` (an earlier pending alarm is kept).
    /// Flushes never come closer than a second apart: KV takes one write per key per second.
    async fn arm_alarm_within(&self, delay_ms: u64) {
        let storage = self.state.storage();
        let target = now_ms().saturating_add(delay_ms);
        if let Ok(Some(at)) = storage.get_alarm().await {
            if u64::try_from(at).is_ok_and(|at| at <= target) {
                return;
            }
        }
        if let Err(error) = storage.set_alarm(Duration::from_millis(delay_ms)).await {
            self.flush_armed.set(false);
            self.log.error(&format!("setting the flush alarm failed: {error}"));
        }
    }

    /// Flushes a changed room: snapshot to R2, index rows to D1, read model to KV. Only a
    /// complete flush is recorded; a failure keeps the room dirty and retries with capped
    /// exponential backoff, while live traffic goes on untouched.
    async fn flush(&self) {
        let now = now_ms();
        let max_events = self.limits.snapshot_max_events;
        let plan = self.with_room(|room| -> std::result::Result<_, crate::StoreError> {
            if !room.needs_flush()? {
                return Ok(None);
            }
            let Some((tenant, name)) = room.names()? else { return Ok(None) };
            let view = room.view(&tenant, &name, now)?;
            let snapshot = room.snapshot(&tenant, &name, max_events, now)?;
            Ok(Some((view, snapshot, Faults::parse(&room.faults()?))))
        });
        let (view, snapshot, faults) = match plan {
            Ok(Ok(Some(plan))) => plan,
            Ok(Ok(None)) => return,
            Ok(Err(error)) => {
                return self.log.error(&format!("reading the room for the flush failed: {error}"))
            }
            Err(message) => return self.log.error(&message),
        };
        let faults = if Faults::allowed(&self.env) { faults } else { Faults::default() };
        match write_flush(&self.env, faults, &snapshot, &view).await {
            Ok(()) => {
                self.flush_failures.set(0);
                if let Err(error) = self.with_room(|room| room.flushed(snapshot.seq)) {
                    self.log.error(&error);
                }
                // Changes that arrived while the flush was writing get their own flush.
                if self.with_room(|room| room.needs_flush()).is_ok_and(|stale| stale.unwrap_or(false)) {
                    self.flush_armed.set(true);
                    self.arm_alarm_within(self.limits.flush_interval_ms.max(1000)).await;
                }
            }
            Err(error) => {
                let failures = self.flush_failures.get().saturating_add(1);
                self.flush_failures.set(failures);
                let interval = self.limits.flush_interval_ms.max(1000);
                let backoff = interval.saturating_mul(1 << failures.min(6)).min(300_000);
                self.log
                    .warn(&format!("flush failed ({failures} in a row), retrying in {backoff} ms: {error}"));
                self.flush_armed.set(true);
                self.arm_alarm_within(backoff).await;
            }
        }
    }

    /// Restores the latest snapshot (found through D1) into an object whose storage is empty.
    async fn restore_if_empty(&self, tenant: &str, room: &str) {
        if !self.with_room(|r| r.is_empty()).is_ok_and(|empty| empty.unwrap_or(false)) {
            return;
        }
        let Ok(address) = RoomAddress::new(tenant, room) else { return };
        match load_snapshot(&self.env, &address, None).await {
            Ok(Some(snapshot)) => {
                let seq = snapshot.seq;
                match self.with_room(|r| r.restore_snapshot(snapshot)) {
                    Ok(Ok(())) => {
                        self.log.warn(&format!("{address}: storage was empty, restored snapshot {seq}"))
                    }
                    Ok(Err(error)) => self.log.error(&format!("{address}: restore failed: {error}")),
                    Err(message) => self.log.error(&message),
                }
            }
            Ok(None) => {}
            Err(error) => self.log.error(&format!("{address}: looking for a snapshot failed: {error}")),
        }
    }

    /// Sends every queued frame, encoding each at most once per form.
    fn send_queued(&self) {
        loop {
            let Ok(outgoing) = self.with_room(|room| room.take_outgoing()) else {
                return;
            };
            if outgoing.is_empty() {
                return;
            }
            for item in outgoing {
                match item {
                    Outgoing::Deliver { message, recipients } => self.deliver(&message, &recipients),
                    Outgoing::Close { to, code, reason } => {
                        let socket = self.sockets.borrow_mut().remove(&to);
                        if let Some(socket) = socket {
                            close(&socket, code, &reason);
                        }
                        let _ = self.with_room(|room| room.disconnect(to));
                    }
                }
            }
        }
    }

    fn deliver(&self, message: &ServerMessage, recipients: &[u64]) {
        let mut encoded: [Option<WireFrame>; 2] = [None, None];
        let Ok(room) = self.room.try_borrow() else {
            return;
        };
        let Some(room) = room.as_ref() else { return };
        let sockets = self.sockets.borrow();
        for id in recipients {
            let (Some(socket), Some(format)) = (sockets.get(id), room.format_of(*id)) else {
                continue;
            };
            let slot = match format {
                Format::Json => &mut encoded[0],
                Format::Binary => &mut encoded[1],
            };
            send(socket, slot.get_or_insert_with(|| message.encode(format)));
        }
    }

    /// Closes connections that sent nothing, not even a heartbeat `ping`, for too long.
    fn drop_silent_connections(self: &Rc<Self>) {
        let now = now_ms();
        let sockets: Vec<(u64, WebSocket)> =
            self.sockets.borrow().iter().map(|(id, ws)| (*id, ws.clone())).collect();
        let Ok(silent) = self.with_room(|room| {
            for (id, socket) in &sockets {
                if let Some(at) = auto_response_ms(&self.state, socket) {
                    room.touch(*id, at);
                }
            }
            room.silent_connections(now)
        }) else {
            return;
        };
        for id in silent {
            if let Some(socket) = self.sockets.borrow_mut().remove(&id) {
                close(&socket, close_code::HEARTBEAT_TIMEOUT, "no heartbeat");
            }
            let _ = self.with_room(|room| room.disconnect(id));
        }
        Inner::after_event(self);
    }

    /// Keeps one alarm pending while the room has connections, to drop half-open ones.
    async fn ensure_heartbeat_alarm(&self) {
        let connections = self.with_room(|room| room.connection_count()).unwrap_or(0);
        if connections == 0 {
            return;
        }
        let storage = self.state.storage();
        if matches!(storage.get_alarm().await, Ok(Some(_))) {
            return;
        }
        let interval = Duration::from_millis((self.limits.heartbeat_timeout_ms / 2).max(1000));
        if let Err(error) = storage.set_alarm(interval).await {
            self.log.error(&format!("setting the heartbeat alarm failed: {error}"));
        }
    }
}

/// A JSON answer from a room call: the value with 200, or the error with its status.
fn respond<T: serde::Serialize>(
    result: std::result::Result<std::result::Result<T, (ErrorCode, String)>, String>,
) -> Result<Response> {
    match result {
        Ok(Ok(value)) => Response::from_json(&value),
        Ok(Err((code, message))) => json_error(code, &message),
        Err(message) => json_error(ErrorCode::Internal, &message),
    }
}

fn internal(error: crate::StoreError) -> (ErrorCode, String) {
    (ErrorCode::Internal, error.to_string())
}

/// When the runtime last answered this socket's heartbeat `ping` for us, if ever.
fn auto_response_ms(state: &State, ws: &WebSocket) -> Option<u64> {
    let raw: &worker::wasm_bindgen::JsValue = state.as_raw().as_ref();
    let method = js_sys::Reflect::get(raw, &"getWebSocketAutoResponseTimestamp".into()).ok()?;
    let method = method.dyn_into::<js_sys::Function>().ok()?;
    let socket: &worker::wasm_bindgen::JsValue = ws.as_ref().as_ref();
    let date = method.call1(raw, socket).ok()?.dyn_into::<js_sys::Date>().ok()?;
    let ms = date.get_time();
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Sends one frame; a socket that is already closing just misses it (its client resumes).
fn send(ws: &WebSocket, frame: &WireFrame) {
    let _ = match frame {
        WireFrame::Text(text) => ws.send_with_str(text),
        WireFrame::Binary(bytes) => ws.send_with_bytes(bytes),
    };
}

fn close(ws: &WebSocket, code: u16, reason: &str) {
    let _ = ws.close(Some(code), Some(reason));
}
