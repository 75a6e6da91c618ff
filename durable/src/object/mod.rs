//! The workers-rs shells that bind the pure core to a Durable Object's storage, hibernatable
//! WebSockets and alarms, plus the HTTP plumbing the router shares with them. Compiled only with
//! the `worker` feature (by the deployable Worker).

#[cfg(feature = "counters")]
mod counter_host;
// `#[durable_object]` generates undocumented JS bindings.
#[cfg(feature = "counters")]
#[allow(missing_docs)]
mod counter_object;
pub mod d1;
mod export_queue;
#[cfg(feature = "rooms")]
mod exporter;
mod flush;
pub mod http;
#[cfg(feature = "rooms")]
mod room_host;
// `#[durable_object]` generates undocumented JS bindings.
#[cfg(feature = "rooms")]
#[allow(missing_docs)]
mod room_object;
#[cfg(feature = "rooms")]
mod room_restore;
mod shards;
mod telemetry;
mod worker_sql;

#[cfg(feature = "counters")]
pub use counter_object::CounterObject;
pub use export_queue::{send_batch, EXPORT_QUEUE_BINDING};
pub use flush::{list_snapshots, Faults};
#[cfg(feature = "rooms")]
pub use room_object::RoomObject;
pub use shards::RemoteShards;
pub use telemetry::init_tracing;
pub use worker_sql::WorkerSql;
