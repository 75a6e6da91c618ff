//! The messages of protocol v1: what a client sends ([`ClientMessage`]) and what the server sends
//! ([`ServerMessage`]).
//!
//! Each message is an enum variant wrapping a payload struct. The binary form encodes the enum
//! with postcard (variant index first), so **variants may only be appended**. The JSON form is the
//! payload's fields plus `"type"`; see [`crate::codec`].
//!
//! Optional fields are always present in the binary form and may be omitted (or `null`) in JSON.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Body, ErrorCode};

/// Declares a message enum whose variants wrap payload structs, with the JSON `"type"` name of each.
macro_rules! messages {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident($payload:ident) = $tag:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* $variant($payload),)+
        }

        impl $name {
            /// The JSON `"type"` of every message, in binary variant order.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($tag),+];

            /// The JSON `"type"` of this message.
            pub fn type_name(&self) -> &'static str {
                match self { $(Self::$variant(_) => $tag,)+ }
            }

            pub(crate) fn json_fields(&self) -> serde_json::Result<String> {
                match self { $(Self::$variant(payload) => serde_json::to_string(payload),)+ }
            }

            pub(crate) fn from_json_fields(
                type_name: &str,
                text: &str,
            ) -> Option<serde_json::Result<Self>> {
                match type_name {
                    $($tag => Some(serde_json::from_str(text).map(Self::$variant)),)+
                    _ => None,
                }
            }
        }

        $(impl From<$payload> for $name {
            fn from(payload: $payload) -> Self { Self::$variant(payload) }
        })+
    };
}

messages! {
    /// A frame a client sends to a room.
    pub enum ClientMessage {
        /// Opens the session; optional, but needed to resume after a reconnect.
        Hello(Hello) = "hello",
        /// Appends a message event to the room.
        Publish(Publish) = "publish",
        /// Sets one key of the room's shared state.
        StateSet(StateSet) = "state_set",
        /// Deletes one key of the room's shared state.
        StateDelete(StateDelete) = "state_delete",
        /// Replaces this connection's presence data.
        PresenceSet(PresenceSet) = "presence_set",
        /// Asks for a [`Pong`]; used by clients to measure latency and detect dead links.
        Ping(Ping) = "ping",
        /// Adds to the counter this socket is subscribed to.
        CounterAdd(CounterAdd) = "counter_add",
        /// Sets the counter this socket is subscribed to.
        CounterSet(CounterSet) = "counter_set",
        /// Resets the counter this socket is subscribed to to zero.
        CounterReset(CounterReset) = "counter_reset",
    }
}

messages! {
    /// A frame the server sends to a client.
    pub enum ServerMessage {
        /// First frame after `hello`: who you are and what the room holds now.
        Welcome(Welcome) = "welcome",
        /// One sequenced event of the room.
        Event(Event) = "event",
        /// Acknowledges a client operation once it is durable.
        Ack(Ack) = "ack",
        /// Something the client sent was refused; nothing of it was stored.
        Error(ErrorFrame) = "error",
        /// Members joined, left or changed their presence data.
        Presence(PresenceDiff) = "presence",
        /// History could not cover a resume: the client must rebuild from the welcome state.
        Gap(Gap) = "gap",
        /// Answer to [`Ping`].
        Pong(Pong) = "pong",
        /// Several events coalesced into one frame, in sequence order.
        Events(Events) = "events",
        /// A counter's value after a change (and on subscribe).
        Counter(CounterValue) = "counter",
    }
}

impl ClientMessage {
    /// The client-chosen operation id, for messages that carry one.
    pub fn op_id(&self) -> Option<Uuid> {
        match self {
            Self::Publish(Publish { op_id, .. })
            | Self::StateSet(StateSet { op_id, .. })
            | Self::StateDelete(StateDelete { op_id, .. }) => *op_id,
            Self::CounterAdd(CounterAdd { op_id, .. })
            | Self::CounterSet(CounterSet { op_id, .. })
            | Self::CounterReset(CounterReset { op_id }) => Some(*op_id),
            Self::Hello(_) | Self::PresenceSet(_) | Self::Ping(_) => None,
        }
    }
}

/// `hello`: opens or resumes a session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Last sequence number the client has seen; events after it are replayed.
    #[serde(default)]
    pub resume_from: Option<u64>,
    /// Free-form client description (SDK name and version), for diagnostics.
    #[serde(default)]
    pub client: Option<String>,
    /// The room epoch `resume_from` belongs to (from the `welcome` the client last got). When it
    /// is not the room's current epoch, the history was re-created and the client gets a `gap`.
    /// Clients that do not send it resume by `seq` alone.
    #[serde(default)]
    pub epoch: Option<String>,
}

/// `publish`: appends a message to the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Client-chosen id that makes a retry idempotent; when present the server answers with an `ack`.
    #[serde(default)]
    pub op_id: Option<Uuid>,
    /// The message, any JSON value.
    pub body: Body,
    /// Optional topic label, delivered with the event.
    #[serde(default)]
    pub topic: Option<String>,
}

/// `state_set`: sets `key` of the shared state to `value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSet {
    /// Client-chosen operation id (see [`Publish::op_id`]).
    #[serde(default)]
    pub op_id: Option<Uuid>,
    /// The state key.
    pub key: String,
    /// The new value, any JSON value.
    pub value: Body,
}

/// `state_delete`: removes `key` from the shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDelete {
    /// Client-chosen operation id (see [`Publish::op_id`]).
    #[serde(default)]
    pub op_id: Option<Uuid>,
    /// The state key.
    pub key: String,
}

/// `presence_set`: replaces this connection's presence data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceSet {
    /// Any JSON value (size-limited by the server).
    pub data: Body,
}

/// `ping`: asks for a `pong` carrying the same nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Echoed back in the `pong`.
    #[serde(default)]
    pub nonce: Option<u64>,
}

/// `welcome`: the session is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Id of this connection within the room (also the `sender` of its events).
    pub connection_id: u64,
    /// The room's current (last assigned) sequence number.
    pub seq: u64,
    /// Members present now.
    pub members: Vec<Member>,
    /// The whole shared state.
    pub state: Vec<StateEntry>,
    /// The room's epoch: `seq` numbers are only comparable within one epoch. A new epoch starts
    /// whenever the room's history is re-created (restored from a snapshot); keep it with the last
    /// `seq` and send both when resuming.
    pub epoch: String,
}

/// What a sequenced event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A published message; `body` is the message.
    Message,
    /// A state key was set; `key` names it and `body` is the new value.
    StateSet,
    /// A state key was deleted; `key` names it and `body` is `null`.
    StateDelete,
}

impl EventKind {
    /// Stable lower-case name, as used in JSON and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::StateSet => "state_set",
            Self::StateDelete => "state_delete",
        }
    }

    /// Inverse of [`EventKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "message" => Some(Self::Message),
            "state_set" => Some(Self::StateSet),
            "state_delete" => Some(Self::StateDelete),
            _ => None,
        }
    }
}

/// `event`: one sequenced change of the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Per-room sequence number: increasing, never reused.
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The message, or the new state value.
    pub body: Body,
    /// Connection id of the sender; `None` for server-side publishes.
    pub sender: Option<u64>,
    /// Topic of a message, if it had one.
    pub topic: Option<String>,
    /// State key of a state event.
    pub key: Option<String>,
}

/// `events`: a batch of events, coalesced so a busy room sends fewer frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Events in increasing `seq` order.
    pub events: Vec<Event>,
}

/// `ack`: the operation `op_id` is durable as event `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The operation's id, as the client sent it.
    pub op_id: Uuid,
    /// Sequence number of the event the operation produced.
    pub seq: u64,
}

/// `error`: a refused frame or operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// The refused operation's id, when the frame had one.
    pub op_id: Option<Uuid>,
}

/// A member of the room: one connection and its presence data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The connection id.
    pub connection_id: u64,
    /// Authenticated user id, when the connection has one.
    pub user: Option<String>,
    /// Presence data set with `presence_set` (`null` until set).
    pub data: Body,
}

/// `presence`: membership changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceDiff {
    /// Members that joined.
    pub joined: Vec<Member>,
    /// Connection ids that left.
    pub left: Vec<u64>,
    /// Members whose data changed.
    pub updated: Vec<Member>,
}

/// One key of the shared state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Body,
    /// Sequence number of the event that last set it.
    pub seq: u64,
}

/// `gap`: events after `resume_from` up to `seq` are no longer in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The sequence number the client asked to resume from.
    pub resume_from: u64,
    /// The room's sequence number covered by the `welcome` state that accompanies the gap.
    pub seq: u64,
}

/// `pong`: answer to `ping`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The ping's nonce.
    pub nonce: Option<u64>,
}

/// `counter_add`: adds a signed delta (the `ack` carries the new version as `seq`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterAdd {
    /// Required: a retry with the same id is applied once.
    pub op_id: Uuid,
    /// The delta; the sum must stay within i64.
    pub delta: i64,
}

/// `counter_set`: sets the value (unsharded counters only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSet {
    /// Required operation id.
    pub op_id: Uuid,
    /// The new value.
    pub value: i64,
}

/// `counter_reset`: sets the value to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterReset {
    /// Required operation id.
    pub op_id: Uuid,
}

/// `counter`: a counter's value and version (the version grows by one per applied write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValue {
    /// The counter's name.
    pub name: String,
    /// Its value.
    pub value: i64,
    /// Its version.
    pub version: u64,
}
