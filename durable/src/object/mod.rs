//! The workers-rs shells that bind the pure core to a Durable Object's storage, hibernatable
//! WebSockets and alarms, plus the HTTP plumbing the router shares with them. Compiled only with
//! the `worker` feature (by the deployable Worker).

mod counter_host;
// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod counter_object;
pub mod d1;
mod exporter;
mod flush;
pub mod http;
mod room_host;
// `#[durable_object]` generates undocumented JS bindings.
#[allow(missing_docs)]
mod room_object;
mod room_restore;
mod shards;
mod telemetry;
mod worker_sql;

pub use counter_object::CounterObject;
pub use exporter::{send_batch, EXPORT_QUEUE_BINDING};
pub use flush::{list_snapshots, Faults};
pub use room_object::RoomObject;
pub use shards::RemoteShards;
pub use telemetry::init_tracing;
pub use worker_sql::WorkerSql;
