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
    /// The room's epoch (see [`crate::Welcome::epoch`]); empty in read models written before
    /// epochs existed.
    #[serde(default)]
    pub epoch: String,
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
    /// The room's epoch: the page's `seq` numbers belong to it.
    #[serde(default)]
    pub epoch: String,
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

/// One snapshot of a room, as `GET /v1/admin/t/{tenant}/rooms/{room}/snapshots` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The room's seq in the snapshot.
    pub seq: u64,
    /// Its R2 key.
    pub r2_key: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// CRC-32 of its body, hex.
    pub checksum: String,
    /// Whether the R2 object exists (checked with a HEAD request).
    pub in_r2: bool,
}

/// One room of the D1 index, as `GET /v1/admin/t/{tenant}/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room.
    pub room: String,
    /// Its seq at the last flush.
    pub seq: u64,
    /// Members at the last flush.
    pub members: u64,
    /// Time of the last flush, in milliseconds since the Unix epoch.
    pub last_activity_ms: u64,
    /// Key of the last snapshot.
    pub last_snapshot_key: Option<String>,
    /// Size of the last snapshot.
    pub last_snapshot_bytes: Option<u64>,
}

/// Body of `POST /v1/admin/t/{tenant}/rooms/{room}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    /// The snapshot to restore (its seq); the latest when absent.
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Answer of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreResult {
    /// The seq of the restored snapshot.
    pub restored_seq: u64,
    /// The room's seq after the restore (never lower than before).
    pub seq: u64,
}

/// Body of `POST /v1/admin/t/{tenant}/rooms/{room}/kick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KickRequest {
    /// The connection to close (close code 4013).
    pub connection_id: u64,
}

/// Answer of the admin actions on a room's connections and flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminActionResult {
    /// Connections closed (kick, close), or 1 when a flush ran.
    pub affected: u64,
}

/// Body of `POST /v1/admin/t/{tenant}/rooms/{room}/faults` (tests only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRequest {
    /// Stores whose writes fail during this room's flushes: any of `d1`, `r2`, `kv`, `queue`
    /// (export sends), or `discard_queue` (export batches encoded, then dropped as if sent).
    #[serde(default)]
    pub fail: Vec<String>,
}

/// `GET /v1/t/{tenant}/counters/{name}`: a counter's value, summed over its shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterView {
    /// The tenant.
    pub tenant: String,
    /// The counter.
    pub name: String,
    /// The value: the sum of every shard's value.
    pub value: i64,
    /// The sum of every shard's version: grows with every applied write.
    pub version: u64,
    /// Number of shards.
    pub shards: u32,
    /// When the view was made, in milliseconds since the Unix epoch.
    pub generated_ms: u64,
}

/// A counter write over REST or between the router and a counter object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CounterOp {
    /// Add a signed delta.
    Add(i64),
    /// Set the value.
    Set(i64),
    /// Set the value to zero.
    Reset,
}

/// Body of `POST /counters/{name}/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterAddRequest {
    /// The delta.
    pub delta: i64,
    /// Operation id; required.
    #[serde(default)]
    pub op_id: Option<Uuid>,
}

/// Body of `POST /counters/{name}/set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterSetRequest {
    /// The value.
    pub value: i64,
    /// Operation id; required.
    #[serde(default)]
    pub op_id: Option<Uuid>,
}

/// Body of `POST /counters/{name}/reset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterResetRequest {
    /// Operation id; required.
    #[serde(default)]
    pub op_id: Option<Uuid>,
}

/// Body of `POST /counters/{name}/shards`: spread the counter over `shards` objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterShardsRequest {
    /// 1 to 64; a counter's shards can grow, never shrink.
    pub shards: u32,
}

/// Answer to a counter write: the written shard's value and version after the write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterWriteResult {
    /// The shard that applied it (0 for unsharded counters).
    pub shard: u32,
    /// That shard's value after the write (the counter's value when unsharded).
    pub value: i64,
    /// That shard's version after the write.
    pub version: u64,
}
