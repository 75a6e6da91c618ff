//! `CounterObject`: one Durable Object per counter shard (`<tenant>/counter/<name>/<shard>`).
//! Shard 0 is the counter's home: it knows the shard counts, sums the shards for reads, resets
//! them all, holds the live subscriptions and flushes the counter to D1 and KV. What the shards
//! decide lives in [`crate::counter_home`] and [`crate::Subscribers`]; this file carries it out.

use edgeroom_protocol::{close_code, CounterShardsRequest, Right, WireFrame};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
};

use super::counter_host::{error_frame, send_counted, CounterHost, HomeShards};
use super::http::{
    arm_alarm, close, echo_close_code, internal, now_ms, read_body, read_json, received, respond,
    served_or_error,
};
use super::shards::RemoteShards;
use super::telemetry::init_tracing;
use crate::{
    reset_plan, routed_write, write_answer, ApiError, CounterState, Limits, Metrics, ShardClient, ShardOp,
    ShardReport, ShardState, ShardWrite, SocketStep, Subscriber, Target, Watch,
};

/// The counter shard Durable Object.
#[durable_object]
pub struct CounterObject {
    host: CounterHost,
}

impl DurableObject for CounterObject {
    fn new(state: State, env: Env) -> Self {
        init_tracing(&env);
        // The heartbeat: the runtime answers the text `ping` without waking the object.
        if let Ok(pair) = worker::worker_sys::WebSocketRequestResponsePair::new("ping", "pong") {
            state.set_websocket_auto_response(&pair);
        }
        let (limits, _) = Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        Self { host: CounterHost::new(state, env, limits) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let served = self.serve(req).await;
        // What the request counted survives hibernation with a subscription socket.
        self.host.carry_counts(None);
        served_or_error(served)
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let (Ok(Some(who)), Ok(Some(address))) =
            (ws.deserialize_attachment::<Subscriber>(), self.host.address())
        else {
            close(&ws, close_code::INTERNAL, "subscription state lost; reconnect");
            return Ok(());
        };
        let frame = match message {
            WebSocketIncomingMessage::String(text) => WireFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => WireFrame::Binary(bytes),
        };
        self.host.count(|m| m.frame_in(frame.len()));
        let history = match self.host.with(|c| Ok(c.shard_history()?)) {
            Ok(history) => history,
            Err(error) => return send_counted(&self.host, &ws, who.format, &error_frame(error)),
        };
        let sharded = history.current() > 1;
        let steps = self.host.subscribers.borrow_mut().handle_frame(
            &who,
            &frame,
            sharded,
            &self.host.limits,
            now_ms(),
        );
        for step in steps {
            match step {
                SocketStep::Reply(message) => send_counted(&self.host, &ws, who.format, &message)?,
                SocketStep::Close(code, reason) => close(&ws, code, &reason),
                SocketStep::Apply { op_id, op } => {
                    let write = ShardWrite { op_id: op_id.to_string(), op };
                    let home = HomeShards { object: &self.host, address: &address };
                    let result = routed_write(&home, &history, &write, now_ms()).await;
                    let state = result.map(|r| CounterState { value: r.value, version: r.version });
                    send_counted(&self.host, &ws, who.format, &write_answer(op_id, state))?;
                    self.host.count(|m| m.acks += 1);
                }
            }
        }
        self.host.carry_counts(Some(&ws));
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        close(&ws, echo_close_code(code), "closed");
        if let Ok(Some(who)) = ws.deserialize_attachment::<Subscriber>() {
            self.host.subscribers.borrow_mut().forget(who.id);
        }
        let open = self.host.state.get_websockets().iter().filter(|s| s.as_ref().ready_state() == 1).count();
        if open == 0 {
            if let Err(error) = self.host.watch_shards(false).await {
                tracing::warn!(%error, "turning shard reports off failed");
            }
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let Ok(Some((address, shard))) = self.host.identity() else { return Response::ok("ok") };
        let now = now_ms();
        self.host.count(|m| m.alarms += 1);
        let mut timers = self.host.timers.get();
        // Every alarm checks (unless failed writes back off): the alarm may have been armed by an
        // earlier instance, sooner than this one's own timers say (they start anew after each
        // hibernation), and checking early only decides from memory.
        let flush = timers.flush_due(now) || !timers.backing_off();
        if shard != 0 {
            // The home flushes the sum; tell it something changed and what this shard counted.
            let shards = RemoteShards { env: &self.host.env, address: &address };
            let (totals, since) = self.host.with(|c| Ok(c.metrics_to_save())).unwrap_or_default();
            match shards.call::<bool>(0, ShardOp::Changed, Some(&since)).await {
                Ok(_) => {
                    if let Err(error) = self.host.with(|c| Ok(c.saved_metrics(totals)?)) {
                        tracing::warn!(counter = %address, %error, "saving the shard's metrics failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(counter = %address, %error, "telling the home shard failed");
                    self.host.keep_metrics(&address);
                }
            }
            return Response::ok("ok");
        }
        if flush {
            timers.start_flush();
            match self.host.flush(&address).await {
                Ok(next) => timers.checked(&self.host.schedule, now_ms(), next),
                Err(error) => {
                    let failures = timers.flush_failed(&self.host.schedule, now_ms(), None);
                    tracing::warn!(counter = %address, failures, %error, "counter flush failed; backing off");
                }
            }
            self.host.timers.set(timers);
        }
        // After the flush: it sets the timers from its own copy, which would undo the sweep's mark.
        self.host.drop_silent_subscribers();
        // Counts since the last series row (subscriptions, frames, this alarm) survive hibernation.
        self.host.keep_metrics(&address);
        let connected = !self.host.state.get_websockets().is_empty();
        if let Some(at) = self.host.timers.get().next_alarm(&self.host.schedule, now, connected) {
            arm_alarm(&self.host.state, at).await;
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
        self.host.remember(&address, shard)?;
        // Operations only the router sends on a client's behalf are Workers requests too.
        let routed = matches!(
            op,
            ShardOp::Socket | ShardOp::Read | ShardOp::ResetAll | ShardOp::SetShards | ShardOp::Write
        );
        self.host.count(|m| {
            m.requests += 1;
            m.worker_requests += u64::from(routed);
        });
        let local = HomeShards { object: &self.host, address: &address };
        let response = match op {
            ShardOp::Get => respond(self.host.with(|c| {
                let state = c.get()?;
                let subscribers = u32::try_from(self.host.state.get_websockets().len()).unwrap_or(u32::MAX);
                Ok(ShardState {
                    value: state.value,
                    version: state.version,
                    history: c.shard_history()?,
                    subscribers,
                })
            })),
            ShardOp::Write => {
                let write: ShardWrite = read_json(&mut req, "counter write").await?;
                respond(self.host.apply(&address, shard, &write).await)
            }
            ShardOp::Seen => {
                let write: ShardWrite = read_json(&mut req, "counter probe").await?;
                respond(local.seen(shard, &write.op_id).await)
            }
            ShardOp::Read => respond(self.host.aggregate(&address).await),
            ShardOp::ReadMiss => {
                self.host.read_mark().await;
                respond(self.host.aggregate(&address).await)
            }
            ShardOp::ResetAll => {
                let write: ShardWrite = read_json(&mut req, "counter reset").await?;
                let shards = self.host.with(|c| Ok(c.shards()?))?;
                let remote = RemoteShards { env: &self.host.env, address: &address };
                for (other, reset) in reset_plan(&write.op_id, shards) {
                    remote.write(other, &reset).await?;
                }
                respond(self.host.apply(&address, 0, &write).await)
            }
            ShardOp::SetShards => {
                let request: CounterShardsRequest = read_json(&mut req, "shards").await?;
                respond(self.host.with(|c| {
                    let mut history = c.shard_history()?;
                    history.check_change(request.shards)?;
                    history.grow(request.shards, now_ms());
                    c.set_shard_history(&history)?;
                    Ok(request)
                }))
            }
            ShardOp::Changed => {
                // Shards send what they counted since their last report (older ones nothing).
                let body = read_body(&mut req).await?;
                if let Ok(counted) = serde_json::from_slice::<Metrics>(&body) {
                    self.host.reported.borrow_mut().add(&counted);
                }
                self.host.changed().await;
                respond(Ok(true))
            }
            ShardOp::Metrics => respond(self.host.with(|c| Ok(c.metrics()))),
            ShardOp::Socket => self.host.subscribe(&req, &address, request.rights.has(Right::Write)).await,
            ShardOp::Watch => {
                let watch: Watch = read_json(&mut req, "watch").await?;
                respond(self.host.with(|c| Ok(c.set_watched(watch.on)?)).map(|()| watch))
            }
            ShardOp::ShardChanged => {
                let report: ShardReport = read_json(&mut req, "shard report").await?;
                let state = CounterState { value: report.value, version: report.version };
                let merged = self.host.views.borrow_mut().merge(report.shard, state);
                if merged {
                    self.host.broadcast_current(&address).await?;
                }
                respond(Ok(merged))
            }
        };
        response.map_err(internal)
    }
}
