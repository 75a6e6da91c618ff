//! `CounterObject`: one Durable Object per counter shard (`<tenant>/counter/<name>/<shard>`).
//! Shard 0 is the counter's home: it knows the number of shards, sums them for reads, resets
//! them all, holds the live subscriptions and flushes the counter to D1 and KV.

use std::cell::RefCell;
use std::time::Duration;

use edgeroom_protocol::{
    Ack, ClientMessage, CounterOp, CounterShardsRequest, CounterValue, CounterView, CounterWriteResult,
    ErrorCode, ErrorFrame, Format, Right, Rights, RoomAddress, ServerMessage, WireFrame,
};
use serde::{Deserialize, Serialize};
use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Headers, Method, Request, RequestInit, Response, Result, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

use super::{headers, is_websocket_upgrade, json_error, Log, WorkerSql, DB_BINDING, READ_MODEL_BINDING};
use crate::{sum_shards, Counter, CounterError, CounterState, Limits};

/// Binding name of the counter Durable Object namespace.
pub const COUNTERS_BINDING: &str = "COUNTERS";
/// Header naming the shard a request is for.
pub const SHARD_HEADER: &str = "x-edgeroom-shard";
/// Where a counter object keeps its names (it only learns them from requests).
const NAMES_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS counter_names (id INTEGER PRIMARY KEY CHECK (id = 1), tenant TEXT, name TEXT, shard INTEGER)";

/// Socket tag of subscriptions that may write.
const WRITER_TAG: &str = "writer";

/// Most shards a counter may have.
pub const MAX_SHARDS: u32 = 64;

/// What the router (or the home shard) asks a counter object to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRequest {
    /// This shard's value, version and (home) shard count.
    Get,
    /// Apply one operation to this shard.
    Write,
    /// Home: the sum over all shards.
    Read,
    /// Home: reset every shard.
    ResetAll,
    /// Home: set the number of shards.
    Shards,
    /// Home: a shard changed; flush soon.
    Changed,
    /// Home: a live subscription.
    Socket,
    /// Non-home shard: report changes to the home (body `{"on": bool}`), while it has subscribers.
    Watch,
    /// Home: a watched shard changed (body [`ShardChange`]).
    ShardChanged,
}

impl CounterRequest {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "counter-get",
            Self::Write => "counter-write",
            Self::Read => "counter-read",
            Self::ResetAll => "counter-reset",
            Self::Shards => "counter-shards",
            Self::Changed => "counter-changed",
            Self::Socket => "ws",
            Self::Watch => "counter-watch",
            Self::ShardChanged => "counter-shard-changed",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Get,
            Self::Write,
            Self::Read,
            Self::ResetAll,
            Self::Shards,
            Self::Changed,
            Self::Socket,
            Self::Watch,
            Self::ShardChanged,
        ]
        .into_iter()
        .find(|op| op.as_str() == name)
    }
}

/// Body of a [`CounterRequest::Write`] or [`CounterRequest::ResetAll`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterWrite {
    /// The operation id.
    pub op_id: String,
    /// The operation.
    pub op: CounterOp,
}

/// Answer of [`CounterRequest::Get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// The shard's value.
    pub value: i64,
    /// The shard's version.
    pub version: u64,
    /// Number of shards (meaningful on the home shard).
    pub shards: u32,
}

/// A shard's new state, reported to the home while the counter has live subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChange {
    /// The shard.
    pub shard: u32,
    /// Its value.
    pub value: i64,
    /// Its version.
    pub version: u64,
}

/// Body of [`CounterRequest::Watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Watch {
    on: bool,
}

/// The counter shard Durable Object.
#[durable_object]
pub struct CounterObject {
    state: State,
    env: Env,
    log: Log,
    limits: Limits,
    counter: RefCell<Option<Counter<WorkerSql>>>,
    /// Home only: the latest known state of every other shard, for live aggregates.
    shard_states: RefCell<std::collections::HashMap<u32, CounterState>>,
    /// This object's counter and shard, once known (stored too: alarms and sockets need them).
    identity: RefCell<Option<(RoomAddress, u32)>>,
}

impl DurableObject for CounterObject {
    fn new(state: State, env: Env) -> Self {
        let log = Log::from_env(&env);
        let (limits, _) = Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        Self {
            state,
            env,
            log,
            limits,
            counter: RefCell::new(None),
            shard_states: RefCell::new(Default::default()),
            identity: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
        let Some(op) = CounterRequest::from_name(&header(headers::OP)) else {
            return json_error(ErrorCode::NotFound, "unknown counter operation");
        };
        let (tenant, name) = (header(headers::TENANT), header(headers::ROOM));
        let shard: u32 = header(SHARD_HEADER).parse().unwrap_or(0);
        let Ok(address) = RoomAddress::new(&tenant, &name) else {
            return json_error(ErrorCode::BadRequest, "unknown counter");
        };
        self.remember(&address, shard)?;
        match op {
            CounterRequest::Get => {
                let state = self.with(|c| Ok((c.get()?, c.shards()?)))?;
                Response::from_json(&ShardState {
                    value: state.0.value,
                    version: state.0.version,
                    shards: state.1,
                })
            }
            CounterRequest::Write => {
                let write: CounterWrite = match serde_json::from_str(&req.text().await?) {
                    Ok(write) => write,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad counter write: {error}"))
                    }
                };
                match self.apply(&address, shard, &write).await? {
                    Ok(state) => Response::from_json(&CounterWriteResult {
                        shard,
                        value: state.value,
                        version: state.version,
                    }),
                    Err((code, message)) => json_error(code, &message),
                }
            }
            CounterRequest::Read => match self.aggregate(&address).await? {
                Some(view) => Response::from_json(&view),
                None => {
                    json_error(ErrorCode::LimitExceeded, "the sum of the shards overflows a 64-bit counter")
                }
            },
            CounterRequest::ResetAll => {
                let write: CounterWrite = match serde_json::from_str(&req.text().await?) {
                    Ok(write) => write,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad counter reset: {error}"))
                    }
                };
                let shards = self.with(|c| Ok(c.shards()?))?;
                for other in 1..shards {
                    let body =
                        CounterWrite { op_id: format!("{}/{other}", write.op_id), op: CounterOp::Reset };
                    shard_request(&self.env, &address, other, CounterRequest::Write, Some(&body)).await?;
                }
                match self.apply(&address, 0, &write).await? {
                    Ok(state) => Response::from_json(&CounterWriteResult {
                        shard: 0,
                        value: state.value,
                        version: state.version,
                    }),
                    Err((code, message)) => json_error(code, &message),
                }
            }
            CounterRequest::Shards => {
                let request: CounterShardsRequest = match serde_json::from_str(&req.text().await?) {
                    Ok(request) => request,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad shards body: {error}"))
                    }
                };
                let current = self.with(|c| Ok(c.shards()?))?;
                if !(current..=MAX_SHARDS).contains(&request.shards) {
                    let message = format!("shards can grow from {current} up to {MAX_SHARDS}, never shrink");
                    let code = if request.shards == 0 || request.shards > MAX_SHARDS {
                        ErrorCode::BadRequest
                    } else {
                        ErrorCode::LimitExceeded
                    };
                    return json_error(code, &message);
                }
                self.with(|c| Ok(c.set_shards(request.shards)?))?;
                Response::from_json(&request)
            }
            CounterRequest::Changed => {
                self.arm_flush().await;
                Response::ok("ok")
            }
            CounterRequest::Socket => self.subscribe(&req, &address).await,
            CounterRequest::Watch => {
                let watch: Watch = match serde_json::from_str(&req.text().await?) {
                    Ok(watch) => watch,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad watch body: {error}"))
                    }
                };
                self.with(|c| Ok(c.set_watched(watch.on)?))?;
                Response::ok("ok")
            }
            CounterRequest::ShardChanged => {
                let change: ShardChange = match serde_json::from_str(&req.text().await?) {
                    Ok(change) => change,
                    Err(error) => {
                        return json_error(ErrorCode::BadRequest, &format!("bad change body: {error}"))
                    }
                };
                {
                    let mut states = self.shard_states.borrow_mut();
                    let known = states.entry(change.shard).or_default();
                    // Reports may arrive out of order: only a newer version counts.
                    if change.version > known.version {
                        *known = CounterState { value: change.value, version: change.version };
                    }
                }
                self.broadcast_current(&address).await?;
                Response::ok("ok")
            }
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let (frame, format) = match message {
            WebSocketIncomingMessage::String(text) => (WireFrame::Text(text), Format::Json),
            WebSocketIncomingMessage::Binary(bytes) => (WireFrame::Binary(bytes), Format::Binary),
        };
        let meta = self.with(|c| Ok(c.shards().ok()))?;
        let Some(address) = self.address()? else { return Ok(()) };
        let reply = |message: ServerMessage| {
            let _ = match message.encode(format) {
                WireFrame::Text(text) => ws.send_with_str(text),
                WireFrame::Binary(bytes) => ws.send_with_bytes(bytes),
            };
        };
        let refuse = |code, message: String, op_id| reply(ErrorFrame { code, message, op_id }.into());
        if frame.len() > self.limits.max_frame_bytes {
            refuse(ErrorCode::TooLarge, "frame over the size limit".into(), None);
            return Ok(());
        }
        let (op_id, op) = match ClientMessage::decode(&frame) {
            Ok(ClientMessage::CounterAdd(add)) => (add.op_id, CounterOp::Add(add.delta)),
            Ok(ClientMessage::CounterSet(set)) if meta == Some(1) => (set.op_id, CounterOp::Set(set.value)),
            Ok(ClientMessage::CounterSet(set)) => {
                let message = "set is not available on a sharded counter; use reset".to_owned();
                refuse(ErrorCode::LimitExceeded, message, Some(set.op_id));
                return Ok(());
            }
            Ok(ClientMessage::CounterReset(reset)) => (reset.op_id, CounterOp::Reset),
            Ok(ClientMessage::Ping(ping)) => {
                reply(edgeroom_protocol::Pong { nonce: ping.nonce }.into());
                return Ok(());
            }
            Ok(other) => {
                let message = format!("`{}` is not a counter operation", other.type_name());
                refuse(ErrorCode::UnknownType, message, other.op_id());
                return Ok(());
            }
            Err(error) => {
                refuse(error.code(), error.to_string(), None);
                return Ok(());
            }
        };
        if !self.state.get_tags(&ws).iter().any(|tag| tag == WRITER_TAG) {
            refuse(ErrorCode::Forbidden, "this connection lacks the `write` right".into(), Some(op_id));
            return Ok(());
        }
        let write = CounterWrite { op_id: op_id.to_string(), op };
        match self.apply(&address, 0, &write).await? {
            Ok(state) => reply(Ack { op_id, seq: state.version }.into()),
            Err((code, message)) => refuse(code, message, Some(op_id)),
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        let _ = ws.close(Some(1000), Some("closed"));
        let still_open =
            self.state.get_websockets().iter().filter(|socket| socket.as_ref().ready_state() == 1).count();
        if still_open == 0 {
            self.watch_shards(false).await?;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let Some((address, shard)) = self.address_and_shard()? else { return Response::ok("ok") };
        if shard != 0 {
            // Tell the home shard; it flushes the sum.
            shard_request(&self.env, &address, 0, CounterRequest::Changed, None).await?;
            return Response::ok("ok");
        }
        if let Err(error) = self.flush(&address).await {
            self.log.warn(&format!("counter {address} flush failed, retrying: {error}"));
            self.state
                .storage()
                .set_alarm(Duration::from_millis(self.limits.flush_interval_ms.max(1000) * 4))
                .await?;
        }
        Response::ok("ok")
    }
}

impl CounterObject {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Counter<WorkerSql>) -> std::result::Result<T, CounterError>,
    ) -> Result<T> {
        let mut slot =
            self.counter.try_borrow_mut().map_err(|_| worker::Error::RustError("counter busy".into()))?;
        if slot.is_none() {
            let counter = Counter::open(WorkerSql(self.state.storage().sql())).map_err(rust_error)?;
            *slot = Some(counter);
        }
        let counter = slot.as_mut().ok_or_else(|| worker::Error::RustError("counter not open".into()))?;
        f(counter).map_err(rust_error)
    }

    /// Stores the counter's names once per object instance (not on every request).
    fn remember(&self, address: &RoomAddress, shard: u32) -> Result<()> {
        if self.identity.borrow().is_some() {
            return Ok(());
        }
        let sql = self.state.storage().sql();
        sql.exec(NAMES_TABLE, None)?;
        sql.exec(
            "INSERT OR IGNORE INTO counter_names (id, tenant, name, shard) VALUES (1, ?, ?, ?)",
            vec![address.tenant().into(), address.room().into(), i64::from(shard).into()],
        )?;
        *self.identity.borrow_mut() = Some((address.clone(), shard));
        Ok(())
    }

    fn address_and_shard(&self) -> Result<Option<(RoomAddress, u32)>> {
        if let Some(identity) = self.identity.borrow().clone() {
            return Ok(Some(identity));
        }
        #[derive(Deserialize)]
        struct Names {
            tenant: String,
            name: String,
            shard: f64,
        }
        let sql = self.state.storage().sql();
        sql.exec(NAMES_TABLE, None)?;
        let rows: Vec<Names> = sql.exec("SELECT tenant, name, shard FROM counter_names", None)?.to_array()?;
        let identity = rows
            .into_iter()
            .next()
            .and_then(|n| Some((RoomAddress::new(&n.tenant, &n.name).ok()?, n.shard as u32)));
        self.identity.borrow_mut().clone_from(&identity);
        Ok(identity)
    }

    fn address(&self) -> Result<Option<RoomAddress>> {
        Ok(self.address_and_shard()?.map(|(address, _)| address))
    }

    /// Applies one write to this shard, tells the live subscribers and schedules the flush.
    async fn apply(
        &self,
        address: &RoomAddress,
        shard: u32,
        write: &CounterWrite,
    ) -> Result<std::result::Result<CounterState, (ErrorCode, String)>> {
        let now = worker::Date::now().as_millis();
        let outcome = {
            let mut slot =
                self.counter.try_borrow_mut().map_err(|_| worker::Error::RustError("counter busy".into()))?;
            if slot.is_none() {
                *slot = Some(Counter::open(WorkerSql(self.state.storage().sql())).map_err(rust_error)?);
            }
            match slot.as_mut() {
                Some(counter) => counter.apply(&write.op_id, &write.op, now),
                None => return Err(worker::Error::RustError("counter not open".into())),
            }
        };
        match outcome {
            Ok((state, applied)) => {
                if applied {
                    if shard == 0 {
                        self.broadcast_current(address).await?;
                    } else if self.with(|c| Ok(c.watched()?))? {
                        let change = ShardChange { shard, value: state.value, version: state.version };
                        let body = serde_json::to_string(&change).map_err(rust_error)?;
                        shard_request_raw(&self.env, address, 0, CounterRequest::ShardChanged, Some(body))
                            .await?;
                    }
                    self.arm_flush().await;
                }
                Ok(Ok(state))
            }
            Err(CounterError::Overflow { value, delta }) => Ok(Err((
                ErrorCode::LimitExceeded,
                format!("{value} + {delta} overflows a 64-bit counter; nothing changed"),
            ))),
            Err(CounterError::Store(error)) => Err(rust_error(error)),
        }
    }

    fn broadcast(&self, address: &RoomAddress, state: CounterState) {
        let message: ServerMessage =
            CounterValue { name: address.room().to_owned(), value: state.value, version: state.version }
                .into();
        for format in [Format::Json, Format::Binary] {
            let sockets = self.state.get_websockets_with_tag(format.as_str());
            if sockets.is_empty() {
                continue;
            }
            let frame = message.encode(format);
            for socket in sockets {
                let _ = match &frame {
                    WireFrame::Text(text) => socket.send_with_str(text),
                    WireFrame::Binary(bytes) => socket.send_with_bytes(bytes),
                };
            }
        }
    }

    /// A live subscription: the current value first, then one frame per change. On a sharded
    /// counter the other shards report their changes to the home while it has subscribers, and
    /// frames carry the sum (its version grows with every write, though reports that arrive
    /// together may be merged into one frame).
    async fn subscribe(&self, req: &Request, address: &RoomAddress) -> Result<Response> {
        if !is_websocket_upgrade(req)? {
            return json_error(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
        }
        let shards = self.with(|c| Ok(c.shards()?))?;
        if shards > 1 && self.state.get_websockets().is_empty() {
            self.watch_shards(true).await?;
        }
        let Some(view) = self.aggregate(address).await? else {
            return json_error(ErrorCode::LimitExceeded, "the sum of the shards overflows a 64-bit counter");
        };
        let format = req
            .url()?
            .query_pairs()
            .find(|(name, _)| name == "format")
            .and_then(|(_, value)| Format::from_name(&value))
            .unwrap_or_default();
        let rights =
            req.headers().get(headers::RIGHTS)?.as_deref().and_then(Rights::parse).unwrap_or_default();
        let pair = WebSocketPair::new()?;
        let mut tags = vec![format.as_str()];
        if rights.has(Right::Write) {
            tags.push(WRITER_TAG);
        }
        self.state.accept_websocket_with_tags(&pair.server, &tags);
        let first: ServerMessage =
            CounterValue { name: address.room().to_owned(), value: view.value, version: view.version }.into();
        let _ = match first.encode(format) {
            WireFrame::Text(text) => pair.server.send_with_str(text),
            WireFrame::Binary(bytes) => pair.server.send_with_bytes(bytes),
        };
        Response::from_websocket(pair.client)
    }

    /// Turns change reports of every other shard on or off.
    async fn watch_shards(&self, on: bool) -> Result<()> {
        let shards = self.with(|c| Ok(c.shards()?))?;
        let Some(address) = self.address()? else { return Ok(()) };
        let body = serde_json::to_string(&Watch { on }).map_err(rust_error)?;
        for shard in 1..shards {
            shard_request_raw(&self.env, &address, shard, CounterRequest::Watch, Some(body.clone())).await?;
        }
        Ok(())
    }

    /// Sends the subscribers the counter's current value: this shard's when unsharded, else the
    /// sum with the other shards' latest known states.
    async fn broadcast_current(&self, address: &RoomAddress) -> Result<()> {
        if self.state.get_websockets().is_empty() {
            return Ok(());
        }
        let (home, shards) = self.with(|c| Ok((c.get()?, c.shards()?)))?;
        let mut states = vec![home];
        for shard in 1..shards {
            let known = self.shard_states.borrow().get(&shard).copied();
            let state = match known {
                Some(state) => state,
                None => {
                    let mut response =
                        shard_request(&self.env, address, shard, CounterRequest::Get, None).await?;
                    let fetched: ShardState = response.json().await?;
                    let state = CounterState { value: fetched.value, version: fetched.version };
                    self.shard_states.borrow_mut().insert(shard, state);
                    state
                }
            };
            states.push(state);
        }
        if let Some(sum) = sum_shards(&states) {
            self.broadcast(address, sum);
        }
        Ok(())
    }

    /// The sum over every shard (`None` when it overflows).
    async fn aggregate(&self, address: &RoomAddress) -> Result<Option<CounterView>> {
        let (home, shards) = self.with(|c| Ok((c.get()?, c.shards()?)))?;
        let mut states = vec![home];
        for shard in 1..shards {
            let mut response = shard_request(&self.env, address, shard, CounterRequest::Get, None).await?;
            let state: ShardState = response.json().await?;
            states.push(CounterState { value: state.value, version: state.version });
        }
        Ok(sum_shards(&states).map(|sum| CounterView {
            tenant: address.tenant().to_owned(),
            name: address.room().to_owned(),
            value: sum.value,
            version: sum.version,
            shards,
            generated_ms: worker::Date::now().as_millis(),
        }))
    }

    async fn arm_flush(&self) {
        let storage = self.state.storage();
        if matches!(storage.get_alarm().await, Ok(Some(_))) {
            return;
        }
        let _ = storage.set_alarm(Duration::from_millis(self.limits.flush_interval_ms.max(1000))).await;
    }

    /// Writes the counter's sum to D1 (exact, as text) and its read model to KV.
    async fn flush(&self, address: &RoomAddress) -> Result<()> {
        let Some(view) = self.aggregate(address).await? else { return Ok(()) };
        self.env
            .d1(DB_BINDING)?
            .prepare(
                "INSERT INTO counters (tenant, name, value, version, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, name) DO UPDATE SET value = excluded.value, version = excluded.version,
                   updated_ms = excluded.updated_ms",
            )
            .bind(&[
                address.tenant().into(),
                address.room().into(),
                view.value.to_string().into(),
                view.version.to_string().into(),
                JsValue::from(view.generated_ms as f64),
            ])?
            .run()
            .await?;
        let json = serde_json::to_string(&view).map_err(rust_error)?;
        self.env
            .kv(READ_MODEL_BINDING)?
            .put(&address.counter_read_model_key(), json)?
            .execute()
            .await
            .map_err(rust_error)
    }
}

/// Sends `op` with an optional counter write to shard `shard` of the counter.
pub async fn shard_request(
    env: &Env,
    address: &RoomAddress,
    shard: u32,
    op: CounterRequest,
    body: Option<&CounterWrite>,
) -> Result<Response> {
    let body = body.map(serde_json::to_string).transpose().map_err(rust_error)?;
    shard_request_raw(env, address, shard, op, body).await
}

/// Sends `op` with an optional JSON body to shard `shard` of the counter.
async fn shard_request_raw(
    env: &Env,
    address: &RoomAddress,
    shard: u32,
    op: CounterRequest,
    body: Option<String>,
) -> Result<Response> {
    let headers = Headers::new();
    headers.set(headers::OP, op.as_str())?;
    headers.set(headers::TENANT, address.tenant())?;
    headers.set(headers::ROOM, address.room())?;
    headers.set(SHARD_HEADER, &shard.to_string())?;
    let mut init = RequestInit::new();
    init.with_headers(headers).with_method(if body.is_some() { Method::Post } else { Method::Get });
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let request = Request::new_with_init("https://counter.internal/", &init)?;
    env.durable_object(COUNTERS_BINDING)?
        .id_from_name(&address.counter_shard_key(shard))?
        .get_stub()?
        .fetch_with_request(request)
        .await
}

fn rust_error(error: impl std::fmt::Display) -> worker::Error {
    worker::Error::RustError(error.to_string())
}
