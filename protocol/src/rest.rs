//! Bodies of the REST API (`docs/openapi.yaml`), shared by the router, the objects and clients.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Body, Event, Member};

/// `GET /v1/t/{tenant}/rooms/{room}`: the room's current state. Also the JSON read model that
/// rooms publish to KV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    /// The tenant.
    pub tenant: String,
    /// The room.
    pub room: String,
    /// The room's sequence number this view reflects.
    pub seq: u64,
    /// The shared state.
    pub state: BTreeMap<String, Body>,
    /// Members present (connections with the presence right).
    pub members: Vec<Member>,
    /// When the view was made, in milliseconds since the Unix epoch.
    pub generated_ms: u64,
}

/// `GET /v1/t/{tenant}/rooms/{room}/history?after=N&limit=M`: a page of history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Events with `seq > after`, in order.
    pub events: Vec<Event>,
    /// The room's current sequence number.
    pub seq: u64,
    /// The lowest sequence number history still holds (`None` when empty); asking for `after`
    /// below `oldest - 1` means some events are gone.
    pub oldest: Option<u64>,
}

/// `POST /v1/t/{tenant}/rooms/{room}/messages`: a server-side publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The message, any JSON value.
    pub body: Body,
    /// Makes a retry idempotent (also accepted as the `Idempotency-Key` header).
    #[serde(default)]
    pub op_id: Option<Uuid>,
    /// Optional topic.
    #[serde(default)]
    pub topic: Option<String>,
}

/// Answer to a publish: the event's sequence number (the original one for a retry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    /// Sequence number of the stored event.
    pub seq: u64,
    /// The operation id, when one was given.
    pub op_id: Option<Uuid>,
}
