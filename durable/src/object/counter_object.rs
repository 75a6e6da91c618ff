//! `CounterObject`: one Durable Object per counter shard (`<tenant>/counter/<name>/<shard>`).
//! Shard 0 is the counter's home: it knows the shard counts, sums the shards for reads, resets
//! them all, holds the live subscriptions and flushes the counter to D1 and KV. What the shards
//! decide lives in [`crate::counter_home`] and [`crate::Subscribers`]; this file carries it out.

use std::cell::{Cell, RefCell};

use edgeroom_protocol::{
    close_code, CounterAddress, CounterShardsRequest, CounterValue, CounterView, CounterWriteResult, Format,
    Right, ServerMessage, WireFrame,
};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::flush::write_counter;
use super::http::{
    auto_response_ms, close, echo_close_code, error_response, internal, now_ms, read_json, received,
    require_upgrade, respond, send_frame,
};
use super::shards::RemoteShards;
use super::telemetry::init_tracing;
use super::WorkerSql;
use crate::{
    reset_plan, routed_write, write_answer, ApiError, Counter, CounterState, Limits, Schedule, ShardClient,
    ShardOp, ShardReport, ShardState, ShardViews, ShardWrite, SocketStep, Subscriber, Subscribers, Target,
    Timers, Watch,
};

/// The counter shard Durable Object.
#[durable_object]
pub struct CounterObject {
    state: State,
    env: Env,
    limits: Limits,
    schedule: Schedule,
    counter: RefCell<Option<Counter<WorkerSql>>>,
    /// Home only: what the other shards last reported, for live sums.
    views: RefCell<ShardViews>,
    /// Home only: the standing of each subscription socket.
    subscribers: RefCell<Subscribers>,
    timers: Cell<Timers>,
    /// This instance has not run an alarm yet (after an eviction its timers are unknown).
    woke_up: Cell<bool>,
}

impl DurableObject for CounterObject {
    fn new(state: State, env: Env) -> Self {
        init_tracing(&env);
        let (limits, _) = Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        let schedule = Schedule::new(&limits);
        Self {
            state,
            env,
            limits,
            schedule,
            counter: RefCell::new(None),
            views: RefCell::new(ShardViews::default()),
            subscribers: RefCell::new(Subscribers::default()),
            timers: Cell::new(Timers::default()),
            woke_up: Cell::new(true),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match self.serve(req).await {
            Ok(response) => Ok(response),
            Err(error) => error_response(&error),
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let (Ok(Some(who)), Ok(Some(address))) = (ws.deserialize_attachment::<Subscriber>(), self.address())
        else {
            close(&ws, close_code::INTERNAL, "subscription state lost; reconnect");
            return Ok(());
        };
        let frame = match message {
            WebSocketIncomingMessage::String(text) => WireFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => WireFrame::Binary(bytes),
        };
        let history = match self.with(|c| Ok(c.shard_history()?)) {
            Ok(history) => history,
            Err(error) => return send_message(&ws, who.format, &error_frame(error)),
        };
        let sharded = history.current() > 1;
        let steps = self.subscribers.borrow_mut().handle_frame(&who, &frame, sharded, &self.limits, now_ms());
        for step in steps {
            match step {
                SocketStep::Reply(message) => send_message(&ws, who.format, &message)?,
                SocketStep::Close(code, reason) => close(&ws, code, &reason),
                SocketStep::Apply { op_id, op } => {
                    let write = ShardWrite { op_id: op_id.to_string(), op };
                    let home = HomeShards { object: self, address: &address };
                    let result = routed_write(&home, &history, &write, now_ms()).await;
                    let state = result.map(|r| CounterState { value: r.value, version: r.version });
                    send_message(&ws, who.format, &write_answer(op_id, state))?;
                }
            }
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        close(&ws, echo_close_code(code), "closed");
        if let Ok(Some(who)) = ws.deserialize_attachment::<Subscriber>() {
            self.subscribers.borrow_mut().forget(who.id);
        }
        let open = self.state.get_websockets().iter().filter(|s| s.as_ref().ready_state() == 1).count();
        if open == 0 {
            if let Err(error) = self.watch_shards(false).await {
                tracing::warn!(%error, "turning shard reports off failed");
            }
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let Ok(Some((address, shard))) = self.identity() else { return Response::ok("ok") };
        let now = now_ms();
        let mut timers = self.timers.get();
        let flush = timers.flush_due(now) || (self.woke_up.replace(false) && !timers.is_armed());
        if shard != 0 {
            // The home flushes the sum; tell it something changed.
            let shards = RemoteShards { env: &self.env, address: &address };
            if let Err(error) = shards.call::<bool>(0, ShardOp::Changed, None::<&()>).await {
                tracing::warn!(counter = %address, %error, "telling the home shard failed");
            }
            return Response::ok("ok");
        }
        self.drop_silent_subscribers();
        if flush {
            timers.start_flush();
            let written = match self.aggregate(&address).await {
                Ok(view) => write_counter(&self.env, &address, &view).await.map_err(internal),
                Err(error) => Err(error),
            };
            match written {
                Ok(()) => timers.flushed(&self.schedule, now, false),
                Err(error) => {
                    let failures = timers.flush_failed(&self.schedule, now);
                    tracing::warn!(counter = %address, failures, %error, "counter flush failed; backing off");
                }
            }
            self.timers.set(timers);
        }
        let connected = !self.state.get_websockets().is_empty();
        if let Some(at) = self.timers.get().next_alarm(&self.schedule, now, connected) {
            self.arm_alarm(at).await;
        }
        Response::ok("ok")
    }
}

impl CounterObject {
    async fn serve(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let request = received(&req)?;
        let Target::Shard(address, shard, op) = request.target else {
            return Err(ApiError::not_found("not a counter operation"));
        };
        self.remember(&address, shard)?;
        let local = HomeShards { object: self, address: &address };
        let response = match op {
            ShardOp::Get => respond(self.with(|c| {
                let state = c.get()?;
                Ok(ShardState { value: state.value, version: state.version, history: c.shard_history()? })
            })),
            ShardOp::Write => {
                let write: ShardWrite = read_json(&mut req, "counter write").await?;
                respond(self.apply(&address, shard, &write).await)
            }
            ShardOp::Seen => {
                let write: ShardWrite = read_json(&mut req, "counter probe").await?;
                respond(local.seen(shard, &write.op_id).await)
            }
            ShardOp::Read => respond(self.aggregate(&address).await),
            ShardOp::ResetAll => {
                let write: ShardWrite = read_json(&mut req, "counter reset").await?;
                let shards = self.with(|c| Ok(c.shards()?))?;
                let remote = RemoteShards { env: &self.env, address: &address };
                for (other, reset) in reset_plan(&write.op_id, shards) {
                    remote.write(other, &reset).await?;
                }
                respond(self.apply(&address, 0, &write).await)
            }
            ShardOp::SetShards => {
                let request: CounterShardsRequest = read_json(&mut req, "shards").await?;
                respond(self.with(|c| {
                    let mut history = c.shard_history()?;
                    history.check_change(request.shards)?;
                    history.grow(request.shards, now_ms());
                    c.set_shard_history(&history)?;
                    Ok(request)
                }))
            }
            ShardOp::Changed => {
                self.changed().await;
                respond(Ok(true))
            }
            ShardOp::Socket => self.subscribe(&req, &address, request.rights.has(Right::Write)).await,
            ShardOp::Watch => {
                let watch: Watch = read_json(&mut req, "watch").await?;
                respond(self.with(|c| Ok(c.set_watched(watch.on)?)).map(|()| watch))
            }
            ShardOp::ShardChanged => {
                let report: ShardReport = read_json(&mut req, "shard report").await?;
                let state = CounterState { value: report.value, version: report.version };
                let merged = self.views.borrow_mut().merge(report.shard, state);
                if merged {
                    self.broadcast_current(&address).await?;
                }
                respond(Ok(merged))
            }
        };
        response.map_err(internal)
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Counter<WorkerSql>) -> std::result::Result<T, ApiError>,
    ) -> std::result::Result<T, ApiError> {
        let mut slot =
            self.counter.try_borrow_mut().map_err(|_| ApiError::internal("the counter is busy"))?;
        if slot.is_none() {
            *slot = Some(Counter::open(WorkerSql(self.state.storage().sql()))?);
        }
        let counter = slot.as_mut().ok_or_else(|| ApiError::internal("the counter could not be opened"))?;
        f(counter)
    }

    fn remember(&self, address: &CounterAddress, shard: u32) -> std::result::Result<(), ApiError> {
        if self.identity()?.is_none() {
            self.with(|c| Ok(c.remember_identity(address.tenant(), address.name(), shard)?))?;
        }
        Ok(())
    }

    fn identity(&self) -> std::result::Result<Option<(CounterAddress, u32)>, ApiError> {
        match self.with(|c| Ok(c.identity()?))? {
            Some((tenant, name, shard)) => Ok(Some((CounterAddress::new(&tenant, &name)?, shard))),
            None => Ok(None),
        }
    }

    fn address(&self) -> std::result::Result<Option<CounterAddress>, ApiError> {
        Ok(self.identity()?.map(|(address, _)| address))
    }

    /// Applies one write to this shard, tells the live subscribers (or the home) and schedules
    /// the flush.
    async fn apply(
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

    /// Something changed: a flush becomes due.
    async fn changed(&self) {
        let mut timers = self.timers.get();
        if let Some(due) = timers.changed(&self.schedule, now_ms()) {
            self.timers.set(timers);
            self.arm_alarm(due).await;
        }
    }

    async fn arm_alarm(&self, at_ms: u64) {
        let storage = self.state.storage();
        if let Ok(Some(pending)) = storage.get_alarm().await {
            if u64::try_from(pending).is_ok_and(|pending| pending <= at_ms) {
                return;
            }
        }
        let delay = std::time::Duration::from_millis(at_ms.saturating_sub(now_ms()));
        if let Err(error) = storage.set_alarm(delay).await {
            tracing::error!(%error, "setting the counter alarm failed");
        }
    }

    /// A live subscription: the current value first, then one frame per change.
    async fn subscribe(&self, req: &Request, address: &CounterAddress, can_write: bool) -> Result<Response> {
        if let Err(error) = require_upgrade(req) {
            return error_response(&error);
        }
        let format = req
            .url()?
            .query_pairs()
            .find(|(name, _)| name == "format")
            .and_then(|(_, value)| Format::from_name(&value))
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
        pair.server.serialize_attachment(Subscriber { id, format, can_write })?;
        let value = CounterValue { name: view.name, value: view.value, version: view.version };
        send_message(&pair.server, format, &value.into())?;
        self.changed().await;
        Response::from_websocket(pair.client)
    }

    /// Turns change reports of every other shard on or off.
    async fn watch_shards(&self, on: bool) -> std::result::Result<(), ApiError> {
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
    async fn broadcast_current(&self, address: &CounterAddress) -> std::result::Result<(), ApiError> {
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
        for format in [Format::Json, Format::Binary] {
            let frame = message.encode(format);
            for socket in self.state.get_websockets_with_tag(format.as_str()) {
                send_frame(&socket, &frame);
            }
        }
        Ok(())
    }

    /// The sum over every shard, read now.
    async fn aggregate(&self, address: &CounterAddress) -> std::result::Result<CounterView, ApiError> {
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
    fn drop_silent_subscribers(&self) {
        let now = now_ms();
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
struct HomeShards<'a> {
    object: &'a CounterObject,
    address: &'a CounterAddress,
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

fn send_message(ws: &WebSocket, format: Format, message: &ServerMessage) -> Result<()> {
    send_frame(ws, &message.encode(format));
    Ok(())
}

/// An `error` frame about the connection rather than one operation.
fn error_frame(error: ApiError) -> ServerMessage {
    edgeroom_protocol::ErrorFrame { code: error.code, message: error.message, op_id: None }.into()
}
