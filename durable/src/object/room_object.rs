//! `RoomObject`: one Durable Object per `tenant/room`. It adapts the runtime's events — requests,
//! hibernatable WebSocket frames, the alarm — to [`crate::Room`] through [`RoomHost`], and
//! answers in JSON.

use std::rc::Rc;

use edgeroom_protocol::{
    close_code, AdminActionResult, FaultRequest, KickRequest, PublishRequest, RestoreRequest, RestoreResult,
    RoomAddress, WireFrame,
};
use worker::worker_sys::WebSocketRequestResponsePair;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::exporter::Batches;
use super::flush::{load_snapshot, restore_source, Faults};
use super::http::{
    close, echo_close_code, error_response, internal, now_ms, read_json, received, require_upgrade, respond,
    served_or_error,
};
use super::room_host::RoomHost;
use super::telemetry::init_tracing;
use crate::{ApiError, ConnectOptions, HistoryQuery, Limits, RestoreSource, RoomOp, Target};

/// Text frame that the runtime answers with `pong` without waking the object (the heartbeat).
const HEARTBEAT_PING: &str = "ping";
const HEARTBEAT_PONG: &str = "pong";
/// How soon the alarm comes back while export batches wait and the queue takes them.
const EXPORT_BACKLOG_DELAY_MS: u64 = 100;

/// The room Durable Object.
#[durable_object]
pub struct RoomObject {
    host: Rc<RoomHost>,
}

impl DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        init_tracing(&env);
        let (limits, warnings) = Limits::from_vars(|name| env.var(name).ok().map(|v| v.to_string()));
        for warning in warnings {
            tracing::warn!(%warning, "bad limit setting");
        }
        if let Ok(pair) = WebSocketRequestResponsePair::new(HEARTBEAT_PING, HEARTBEAT_PONG) {
            state.set_websocket_auto_response(&pair);
        }
        Self { host: Rc::new(RoomHost::new(state, env, limits)) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let served = self.serve(req).await;
        // What the request counted survives hibernation with the sockets.
        self.host.carry_counts(None);
        served_or_error(served)
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let host = &self.host;
        let Some(id) = host.connection_id(&ws) else {
            close(&ws, close_code::INTERNAL, "connection state lost; reconnect and resume");
            return Ok(());
        };
        let frame = match message {
            WebSocketIncomingMessage::String(text) => WireFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => WireFrame::Binary(bytes),
        };
        let changed = match host.with_room(|room| Ok(room.handle_frame(id, &frame, now_ms()))) {
            Ok(changed) => changed,
            Err(error) => {
                close(&ws, close_code::INTERNAL, &error.message);
                None
            }
        };
        host.after_event();
        // The counts go into this socket's attachment with its connection's current data, so a
        // changed connection is saved by that same write; only without it is it saved alone.
        if host.carry_counts(Some(id)) != Some(id) {
            if let Some(changed) = changed {
                if let Err(error) = ws.serialize_attachment(&changed) {
                    tracing::error!(connection = id, %error, "saving the connection failed");
                }
            }
        }
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        close(&ws, echo_close_code(code), "closed");
        self.host.forget(&ws);
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        self.host.forget(&ws);
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let host = &self.host;
        let _ = host.with_room(|room| {
            room.metrics_mut().alarms += 1;
            Ok(())
        });
        let timers = host.timers.get();
        // Every alarm checks (unless failed writes back off): the alarm may have been armed by an
        // earlier instance, sooner than this one's own timers say (they start anew after each
        // hibernation), and checking early only decides from memory what is due.
        if timers.flush_due(now_ms()) || !timers.backing_off() {
            host.flush().await;
        }
        // Export runs on every alarm: a busy room's backlog must not wait for the next flush.
        let address = host.address.borrow().clone();
        if let Some(address) = address {
            host.refresh_export_filter(&address).await;
        }
        let sent_all = host.export(Batches::All).await;
        let backlog = host.export_pending().unwrap_or(false);
        // Batches left for the next alarm (a busy room, or a queue that failed): within an
        // interval, unless a failure backs off.
        if backlog {
            let mut timers = host.timers.get();
            timers.due_by(now_ms().saturating_add(host.schedule.flush_interval_ms()));
            host.timers.set(timers);
        }
        host.drop_silent_connections();
        host.carry_counts(None);
        host.rearm().await;
        if backlog && sent_all {
            // The queue took everything offered: come back soon for the rest.
            host.arm_alarm(now_ms().saturating_add(EXPORT_BACKLOG_DELAY_MS)).await;
        }
        Response::ok("ok")
    }
}

impl RoomObject {
    async fn serve(&self, mut req: Request) -> std::result::Result<Response, ApiError> {
        let Target::Room(address, op) = received(&req)?.target else {
            return Err(ApiError::not_found("not a room operation"));
        };
        let request = received(&req)?;
        let host = &self.host;
        // Counting never fails a request.
        let _ = host.with_room(|room| {
            // Every request a room serves came through the router: one Workers request each.
            room.metrics_mut().requests += 1;
            room.metrics_mut().worker_requests += 1;
            Ok(())
        });
        match host.prepare(&address).await {
            Ok(()) => {}
            // An admin restore is how an operator mends a room that could not come back.
            Err(_) if op == RoomOp::Restore => {}
            Err(error) => return Err(error),
        }
        match op {
            RoomOp::Socket => self.accept(&req, request.rights, request.user).await,
            RoomOp::State => {
                respond(host.with_room(|room| Ok(room.view(address.tenant(), address.room(), now_ms())?)))
            }
            RoomOp::Read => {
                // A REST reader missed the KV read model: a read mark, which may make the room
                // write its read model to KV.
                let view = host.with_room(|room| {
                    let wake = room.mark_read(now_ms())?;
                    Ok((room.view(address.tenant(), address.room(), now_ms())?, wake))
                });
                if let Ok((_, Some(by))) = &view {
                    host.check_by(*by);
                }
                respond(view.map(|(view, _)| view))
            }
            RoomOp::History => {
                let url = super::http::request_url(&req);
                let query = HistoryQuery::from_query(url.query_pairs()).map_err(ApiError::bad_request)?;
                respond(host.with_room(|room| Ok(room.history(query.after, query.limit)?)))
            }
            RoomOp::Publish => {
                let publish: PublishRequest = read_json(&mut req, "publish").await?;
                let result = host.with_room(|room| room.publish_from_server(publish, now_ms()));
                host.after_event();
                respond(result)
            }
            RoomOp::Restore => {
                let restore: RestoreRequest = read_json(&mut req, "restore").await?;
                respond(self.restore(&address, restore.seq).await)
            }
            RoomOp::Faults => self.set_faults(&mut req).await,
            RoomOp::Metrics => respond(host.with_room(|room| Ok(room.live(now_ms())?))),
            RoomOp::Kick => {
                let kick: KickRequest = read_json(&mut req, "kick").await?;
                let kicked = host.with_room(|room| Ok(room.kick(kick.connection_id)))?;
                host.after_event();
                if !kicked {
                    return Err(ApiError::not_found(format!(
                        "no connection {} in this room",
                        kick.connection_id
                    )));
                }
                respond(Ok(AdminActionResult { affected: 1 }))
            }
            RoomOp::CloseAll => {
                let closed = host.with_room(|room| Ok(room.close_all()))?;
                host.after_event();
                respond(Ok(AdminActionResult { affected: closed as u64 }))
            }
            RoomOp::Flush => {
                host.with_room(|room| {
                    room.request_flush();
                    Ok(())
                })?;
                if !host.flush().await {
                    return Err(ApiError::internal("the flush failed; it is retried with backoff"));
                }
                respond(Ok(AdminActionResult { affected: 1 }))
            }
        }
        .map_err(internal)
    }

    /// Accepts a WebSocket into the room (hibernatable) and queues its welcome.
    async fn accept(
        &self,
        req: &Request,
        rights: edgeroom_protocol::Rights,
        user: Option<String>,
    ) -> Result<Response> {
        if let Err(error) = require_upgrade(req) {
            return error_response(&error);
        }
        let mut options = match ConnectOptions::from_query(super::http::request_url(req).query_pairs()) {
            Ok(options) => options,
            Err(message) => return error_response(&ApiError::bad_request(message)),
        };
        options.user = user;
        options.rights = rights;
        let host = &self.host;
        let connection = match host.with_room(|room| Ok(room.connect(options, now_ms())?)) {
            Ok(connection) => connection,
            Err(error) => return error_response(&error),
        };
        let pair = WebSocketPair::new()?;
        host.state.accept_web_socket(&pair.server);
        pair.server.serialize_attachment(&connection)?;
        host.add_socket(connection.id, pair.server);
        host.after_event();
        host.rearm().await;
        Response::from_websocket(pair.client)
    }

    /// An admin restore of the snapshot at `seq` (the newest readable one when `None`).
    async fn restore(
        &self,
        address: &RoomAddress,
        seq: Option<u64>,
    ) -> std::result::Result<RestoreResult, ApiError> {
        let env = &self.host.env;
        let snapshot = match seq {
            Some(seq) => load_snapshot(env, address, seq)
                .await
                .map_err(internal)?
                .ok_or_else(|| ApiError::not_found(format!("no snapshot at seq {seq} in the index")))?,
            None => match restore_source(env, address).await {
                RestoreSource::Snapshot(snapshot) => *snapshot,
                RestoreSource::NewRoom => return Err(ApiError::not_found("the room has no snapshot")),
                RestoreSource::Unavailable(reason) => {
                    return Err(ApiError::new(edgeroom_protocol::ErrorCode::Unavailable, reason))
                }
            },
        };
        let restored_seq = snapshot.seq;
        let seq = self.host.with_room(|room| {
            room.restore_snapshot(snapshot)?;
            Ok(room.seq()?)
        })?;
        self.host.gate.borrow_mut().ready();
        self.host.after_event();
        Ok(RestoreResult { restored_seq, seq })
    }

    /// Sets the injected flush faults (test builds only).
    async fn set_faults(&self, req: &mut Request) -> Result<Response> {
        if !Faults::allowed(&self.host.env) {
            return error_response(&ApiError::not_found("fault injection is off"));
        }
        let request: FaultRequest = match read_json(req, "faults").await {
            Ok(request) => request,
            Err(error) => return error_response(&error),
        };
        if let Some(unknown) =
            request.fail.iter().find(|name| !Faults::names().any(|known| known == name.as_str()))
        {
            return error_response(&ApiError::bad_request(format!(
                "unknown fault {unknown:?}; known: {}",
                Faults::names().collect::<Vec<_>>().join(", ")
            )));
        }
        let list = request.fail.join(",");
        let result = self.host.with_room(|room| Ok(room.set_faults(&list)?)).map(|()| request);
        // A cleared fault should not wait out the backoff.
        let mut timers = self.host.timers.get();
        let due = timers.reset_backoff(&self.host.schedule, now_ms());
        self.host.timers.set(timers);
        self.host.arm_alarm(due).await;
        respond(result)
    }
}
