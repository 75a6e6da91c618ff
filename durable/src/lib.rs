//! The Durable Objects of edgeroom.
//!
//! The room logic is pure Rust written against the small [`Sql`] trait, so `cargo test` runs it
//! natively on a real SQLite database (rusqlite); the object shells in [`object`] (feature
//! `worker`) only adapt workers-rs bindings — SQL storage, hibernatable WebSockets, alarms — to it.
//!
//! Follow one message: `object::RoomObject` receives a frame → [`Room::handle_frame`] decodes it,
//! stores the event through [`RoomStore`] and queues it → the shell takes the [`Outgoing`] frames
//! (coalesced into batches) and sends them to the sockets.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

mod admission;
mod cadence;
mod connection;
mod contract;
mod counter;
mod counter_home;
mod counter_socket;
mod error;
mod event_rows;
pub mod export;
pub mod index;
pub mod json_log;
mod limits;
mod metrics;
mod outbox;
mod peers;
mod presence;
pub mod pricing;
mod rate;
mod recent_ops;
mod restore;
mod room;
mod schedule;
mod snapshot;
mod sql;
mod store;

#[cfg(feature = "worker")]
pub mod object;

pub use admission::Admission;
pub use cadence::{
    fingerprint, Cadence, Copies, Decision, Observed, ReadDemand, ReadModelWrite, Written, MIN_KV_TTL_MS,
};
pub use connection::{ConnectOptions, Connection, HistoryQuery};
pub use contract::{
    headers, InternalRequest, RoomOp, ShardOp, ShardReport, ShardState, ShardWrite, Target, Watch,
    COUNTERS_BINDING, DB_BINDING, READ_MODEL_BINDING, ROOMS_BINDING, SNAPSHOTS_BINDING,
};
pub use counter::{sum_shards, Counter, CounterError, CounterState};
pub use counter_home::{
    reset_plan, routed_write, shard_for, ShardClient, ShardCount, ShardHistory, ShardViews, WriteRoute,
    MAX_SHARDS, RESHARD_LOOKBACK_MS,
};
pub use counter_socket::{write_answer, SocketStep, Subscriber, Subscribers};
pub use error::{parse_json_object, ApiError};
pub use limits::Limits;
pub use metrics::{Metrics, RoomLive};
pub use outbox::Outgoing;
pub use restore::{RestoreGate, RestoreSource};
pub use room::{ExportPlan, FlushCheck, FlushPlan, Room};
pub use schedule::{Schedule, SendDecision, Timers, Waiting};
pub use snapshot::{
    orphaned_snapshots, snapshot_key, snapshots_to_delete, Snapshot, SnapshotError, SnapshotInfo,
    SNAPSHOT_FORMAT,
};
pub use sql::{Sql, SqlCounts, SqlValue, StoreError};
pub use store::{RoomStore, StateSize, StoredEvent};
