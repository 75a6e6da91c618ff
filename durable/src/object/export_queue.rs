//! The export queue's producer side, shared by the rooms (which export) and the router (which
//! replays dead-lettered batches).

use worker::Env;

use super::flush::Faults;

/// Binding name of the export queue's producer.
pub const EXPORT_QUEUE_BINDING: &str = "EXPORT_QUEUE";

/// Hands one batch to the export queue. Batches travel as JSON text: event bodies are raw JSON,
/// which the runtime's structured clone would not carry as such. Returns the message's size.
pub async fn send_batch(env: &Env, batch: &crate::export::ExportBatch) -> worker::Result<usize> {
    send_batch_with(env, Faults::default(), batch).await
}

/// [`send_batch`] under the injected faults: `queue` fails the send; `discard_queue` encodes
/// the batch and drops it, as if the queue took it.
pub(super) async fn send_batch_with(
    env: &Env,
    faults: Faults,
    batch: &crate::export::ExportBatch,
) -> worker::Result<usize> {
    if faults.queue {
        return Err(worker::Error::RustError("injected queue failure".into()));
    }
    let json = serde_json::to_string(batch)?;
    let bytes = json.len();
    if !faults.discard_queue {
        env.queue(EXPORT_QUEUE_BINDING)?.send(json).await?;
    }
    Ok(bytes)
}
