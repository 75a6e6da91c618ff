//! The room state machine: turns one client frame into stored events and the frames to send.

use edgeroom_protocol::{
    Ack, ClientMessage, ErrorCode, ErrorFrame, Event, EventKind, Format, Hello, Ping, Pong,
    Publish, ServerMessage, Welcome, WireFrame,
};
use uuid::Uuid;

use crate::{Connection, Limits, RoomStore, Sql, StoreError, StoredEvent};

/// Name of the persistent counter that numbers connections.
const CONNECTION_COUNTER: &str = "connection";

/// What the object shell must do after the room handled a frame, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send to the connection whose frame was handled, in the form of that frame.
    Reply(ServerMessage),
    /// Send to every connection of the room (the sender included), each in its own form.
    Broadcast(ServerMessage),
}

/// One room: its storage, its limits and what it caches from storage.
///
/// Everything cached here is rebuilt from storage on demand, because the runtime may drop Rust
/// memory at any time (hibernation, eviction, a deploy).
pub struct Room<S> {
    store: RoomStore<S>,
    limits: Limits,
    last_seq: Option<u64>,
}

impl<S: Sql> Room<S> {
    /// Opens the room over its SQL storage, creating tables on first use.
    pub fn open(sql: S, limits: Limits) -> Result<Self, StoreError> {
        Ok(Self {
            store: RoomStore::open(sql)?,
            limits,
            last_seq: None,
        })
    }

    /// The room's storage.
    pub fn store(&self) -> &RoomStore<S> {
        &self.store
    }

    /// Registers a new connection and gives it a never-reused id.
    pub fn connect(
        &mut self,
        format: Format,
        user: Option<String>,
    ) -> Result<Connection, StoreError> {
        let id = self.store.next_in_sequence(CONNECTION_COUNTER)?;
        Ok(Connection { id, format, user })
    }

    /// Decodes and handles one frame from `connection`. Bad frames produce an `error` reply and
    /// change nothing.
    pub fn handle_frame(
        &mut self,
        connection: &Connection,
        frame: &WireFrame,
        now_ms: u64,
    ) -> Vec<Effect> {
        if frame.len() > self.limits.max_frame_bytes {
            let message = format!(
                "frame of {} bytes is over the limit of {} bytes",
                frame.len(),
                self.limits.max_frame_bytes
            );
            return vec![error(ErrorCode::TooLarge, message, None)];
        }
        match ClientMessage::decode(frame) {
            Ok(message) => self.handle(connection, message, now_ms),
            Err(decode_error) => vec![error(decode_error.code(), decode_error.to_string(), None)],
        }
    }

    /// Handles one decoded message from `connection`.
    pub fn handle(
        &mut self,
        connection: &Connection,
        message: ClientMessage,
        now_ms: u64,
    ) -> Vec<Effect> {
        match message {
            ClientMessage::Hello(hello) => self.hello(connection, hello),
            ClientMessage::Publish(publish) => self.publish(connection, publish, now_ms),
            ClientMessage::Ping(Ping { nonce }) => vec![Effect::Reply(Pong { nonce }.into())],
            other => vec![error(
                ErrorCode::Unsupported,
                format!(
                    "`{}` is not supported by this server yet",
                    other.type_name()
                ),
                None,
            )],
        }
    }

    fn hello(&mut self, connection: &Connection, _hello: Hello) -> Vec<Effect> {
        match self.last_seq() {
            Ok(seq) => vec![Effect::Reply(
                Welcome {
                    connection_id: connection.id,
                    seq,
                    members: Vec::new(),
                    state: Vec::new(),
                }
                .into(),
            )],
            Err(store_error) => vec![internal(&store_error, None)],
        }
    }

    fn publish(&mut self, connection: &Connection, publish: Publish, now_ms: u64) -> Vec<Effect> {
        let Publish { op_id, body, topic } = publish;
        let event = Event {
            seq: 0,
            kind: EventKind::Message,
            body,
            sender: Some(connection.id),
            topic,
            key: None,
        };
        match self.append(event, op_id, now_ms) {
            Ok(event) => {
                let seq = event.seq;
                let mut effects = vec![Effect::Broadcast(event.into())];
                if let Some(op_id) = op_id {
                    effects.push(Effect::Reply(Ack { op_id, seq }.into()));
                }
                effects
            }
            Err(store_error) => vec![internal(&store_error, op_id)],
        }
    }

    /// Stores `event` under the next sequence number; only a stored event advances the sequence.
    fn append(
        &mut self,
        mut event: Event,
        op_id: Option<Uuid>,
        now_ms: u64,
    ) -> Result<Event, StoreError> {
        let seq = self
            .last_seq()?
            .checked_add(1)
            .ok_or(StoreError::BadRow("sequence exhausted"))?;
        event.seq = seq;
        let stored = StoredEvent {
            event,
            op_id: op_id.map(|id| id.to_string()),
            at_ms: now_ms,
        };
        self.store.append(&stored)?;
        self.last_seq = Some(seq);
        Ok(stored.event)
    }

    fn last_seq(&mut self) -> Result<u64, StoreError> {
        match self.last_seq {
            Some(seq) => Ok(seq),
            None => {
                let seq = self.store.last_seq()?;
                self.last_seq = Some(seq);
                Ok(seq)
            }
        }
    }
}

fn error(code: ErrorCode, message: String, op_id: Option<Uuid>) -> Effect {
    Effect::Reply(
        ErrorFrame {
            code,
            message,
            op_id,
        }
        .into(),
    )
}

fn internal(store_error: &StoreError, op_id: Option<Uuid>) -> Effect {
    error(
        ErrorCode::Internal,
        format!("the operation was not applied: {store_error}"),
        op_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::testing::MemorySql;

    fn room() -> Room<MemorySql> {
        Room::open(MemorySql::new(), Limits::default()).unwrap()
    }

    fn text(json: &str) -> WireFrame {
        WireFrame::Text(json.to_owned())
    }

    fn broadcast_seqs(effects: &[Effect]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Broadcast(ServerMessage::Event(event)) => Some(event.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn publishes_get_increasing_seqs_and_are_stored_first() {
        let mut room = room();
        let alice = room.connect(Format::Json, None).unwrap();
        let bob = room.connect(Format::Binary, None).unwrap();
        assert_ne!(alice.id, bob.id);
        let first = room.handle_frame(&alice, &text(r#"{"type":"publish","body":{"n":1}}"#), 5);
        let second = room.handle_frame(&bob, &text(r#"{"type":"publish","body":"two"}"#), 6);
        assert_eq!(broadcast_seqs(&first), vec![1]);
        assert_eq!(broadcast_seqs(&second), vec![2]);
        let stored = room.store().events_after(0, 10).unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[1].event.body.as_str(), r#""two""#);
        assert_eq!(stored[1].event.sender, Some(bob.id));
    }

    #[test]
    fn seq_continues_after_reopening_storage() {
        let sql = std::rc::Rc::new(MemorySql::new());
        let mut room = Room::open(sql.clone(), Limits::default()).unwrap();
        let conn = room.connect(Format::Json, None).unwrap();
        room.handle_frame(&conn, &text(r#"{"type":"publish","body":1}"#), 1);
        drop(room);
        let mut reopened = Room::open(sql, Limits::default()).unwrap();
        let effects = reopened.handle_frame(&conn, &text(r#"{"type":"publish","body":2}"#), 2);
        assert_eq!(broadcast_seqs(&effects), vec![2]);
    }

    #[test]
    fn op_id_gets_an_ack_with_the_seq() {
        let mut room = room();
        let conn = room.connect(Format::Json, None).unwrap();
        let frame = text(
            r#"{"type":"publish","op_id":"7d0b2a4e-8c1f-4d5e-9a3b-1c2d3e4f5a6b","body":null}"#,
        );
        let effects = room.handle_frame(&conn, &frame, 1);
        let ack = effects.iter().find_map(|e| match e {
            Effect::Reply(ServerMessage::Ack(ack)) => Some(ack.seq),
            _ => None,
        });
        assert_eq!(ack, Some(1));
    }

    #[test]
    fn bad_frames_get_errors_and_store_nothing() {
        let mut room = Room::open(
            MemorySql::new(),
            Limits {
                max_frame_bytes: 64,
            },
        )
        .unwrap();
        let conn = room.connect(Format::Json, None).unwrap();
        let cases = [
            (text("{oops"), ErrorCode::MalformedFrame),
            (text(r#"{"type":"teleport"}"#), ErrorCode::UnknownType),
            (
                WireFrame::Binary(vec![42, 1]),
                ErrorCode::UnsupportedVersion,
            ),
            (
                text(&format!(
                    r#"{{"type":"publish","body":"{}"}}"#,
                    "x".repeat(100)
                )),
                ErrorCode::TooLarge,
            ),
        ];
        for (frame, code) in cases {
            let effects = room.handle_frame(&conn, &frame, 1);
            assert!(
                matches!(&effects[..], [Effect::Reply(ServerMessage::Error(e))] if e.code == code),
                "{frame:?} gave {effects:?}"
            );
        }
        assert_eq!(room.store().last_seq().unwrap(), 0);
    }

    #[test]
    fn hello_is_welcomed_with_the_current_seq() {
        let mut room = room();
        let conn = room.connect(Format::Json, None).unwrap();
        room.handle_frame(&conn, &text(r#"{"type":"publish","body":1}"#), 1);
        let effects = room.handle_frame(&conn, &text(r#"{"type":"hello"}"#), 2);
        assert!(matches!(
            &effects[..],
            [Effect::Reply(ServerMessage::Welcome(w))] if w.seq == 1 && w.connection_id == conn.id
        ));
    }
}
