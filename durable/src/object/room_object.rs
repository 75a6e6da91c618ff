//! `RoomObject`: one Durable Object per `tenant/room`. Accepts hibernatable WebSockets and hands
//! every frame to [`Room`]; this file only moves bytes between the runtime and the room.

use std::cell::RefCell;

use edgeroom_protocol::{close_code, ErrorCode, Format, ServerMessage, WireFrame};
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

use super::{json_error, WorkerSql};
use crate::{Connection, Effect, Limits, Room};

/// The room Durable Object.
#[durable_object]
pub struct RoomObject {
    state: State,
    /// Opened on first use; only a cache of what storage holds.
    room: RefCell<Option<Room<WorkerSql>>>,
}

impl DurableObject for RoomObject {
    fn new(state: State, _env: Env) -> Self {
        Self {
            state,
            room: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let upgrade = req.headers().get("Upgrade")?.unwrap_or_default();
        if !upgrade.eq_ignore_ascii_case("websocket") {
            return json_error(
                ErrorCode::UpgradeRequired,
                "this route needs a WebSocket upgrade",
            );
        }
        let format = req
            .url()?
            .query_pairs()
            .find(|(name, _)| name == "format")
            .and_then(|(_, value)| Format::from_name(&value))
            .unwrap_or(Format::Json);
        let connection = match self
            .with_room(|room| room.connect(format, None).map_err(|e| e.to_string()))
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(message)) | Err(message) => return json_error(ErrorCode::Internal, &message),
        };
        let pair = WebSocketPair::new()?;
        self.state
            .accept_websocket_with_tags(&pair.server, &[format.as_str()]);
        pair.server.serialize_attachment(&connection)?;
        Response::from_websocket(pair.client)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let Some(connection) = ws.deserialize_attachment::<Connection>()? else {
            close(
                &ws,
                close_code::INTERNAL,
                "connection state lost; reconnect",
            );
            return Ok(());
        };
        let frame = match message {
            WebSocketIncomingMessage::String(text) => WireFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => WireFrame::Binary(bytes),
        };
        let now_ms = worker::Date::now().as_millis();
        match self.with_room(|room| room.handle_frame(&connection, &frame, now_ms)) {
            Ok(effects) => self.apply(&ws, frame.format(), effects),
            Err(message) => close(&ws, close_code::INTERNAL, &message),
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _clean: bool,
    ) -> Result<()> {
        // Complete the closing handshake; 1005/1006 are reserved and may not be sent back.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006);
        close(&ws, code.unwrap_or(close_code::NORMAL), "closed");
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }
}

impl RoomObject {
    /// Runs `f` on the room, opening it first if needed. Never held across an `.await`.
    fn with_room<T>(
        &self,
        f: impl FnOnce(&mut Room<WorkerSql>) -> T,
    ) -> std::result::Result<T, String> {
        let mut slot = self
            .room
            .try_borrow_mut()
            .map_err(|_| "room is busy".to_owned())?;
        if slot.is_none() {
            let sql = WorkerSql(self.state.storage().sql());
            *slot = Some(Room::open(sql, Limits::default()).map_err(|e| e.to_string())?);
        }
        match slot.as_mut() {
            Some(room) => Ok(f(room)),
            None => Err("room could not be opened".to_owned()),
        }
    }

    fn apply(&self, ws: &WebSocket, reply_format: Format, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Reply(message) => send(ws, &message.encode(reply_format)),
                Effect::Broadcast(message) => self.broadcast(&message),
            }
        }
    }

    /// Sends `message` to every socket of the room, encoding it at most once per form.
    fn broadcast(&self, message: &ServerMessage) {
        for format in [Format::Json, Format::Binary] {
            let sockets = self.state.get_websockets_with_tag(format.as_str());
            if sockets.is_empty() {
                continue;
            }
            let frame = message.encode(format);
            for socket in &sockets {
                send(socket, &frame);
            }
        }
    }
}

/// Sends one frame; a socket that is already closing just misses it (it will resume).
fn send(ws: &WebSocket, frame: &WireFrame) {
    let _ = match frame {
        WireFrame::Text(text) => ws.send_with_str(text),
        WireFrame::Binary(bytes) => ws.send_with_bytes(bytes),
    };
}

fn close(ws: &WebSocket, code: u16, reason: &str) {
    let _ = ws.close(Some(code), Some(reason));
}
