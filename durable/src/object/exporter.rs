//! Carrying out the room's event export: learning what the tenant exports (from D1, at most once
//! a minute) and handing batches to the export queue after they are durable: a full batch from
//! the send path as soon as it fills, the rest (and retries) from the alarm.

use std::cell::Cell;
use std::rc::Rc;

use edgeroom_protocol::RoomAddress;
use worker::Env;

use super::d1::{database, prepare};
use super::export_queue::send_batch_with;
use super::flush::Faults;
use super::http::now_ms;
use super::room_host::RoomHost;
use crate::export::{ExportFilter, ExportKind};
use crate::{index, ApiError};

/// How long a room trusts what it read of its tenant's export filter.
const FILTER_TTL_MS: u64 = 60_000;
/// Most batches one alarm hands to the queue (the rest waits for the next alarm).
const BATCHES_PER_ALARM: usize = 20;

/// When the room last read its export filter (memory only).
#[derive(Debug, Default)]
pub struct ExportState {
    filter_read_ms: Cell<Option<u64>>,
    /// A task is handing batches to the queue: one at a time keeps them in `seq` order.
    sending: Cell<bool>,
}

/// Clears [`ExportState::sending`] however the export ends.
struct Sending<'a>(&'a Cell<bool>);

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The union of the kinds the tenant's endpoints want.
async fn read_filter(env: &Env, tenant: &str) -> worker::Result<ExportFilter> {
    #[derive(serde::Deserialize)]
    struct Row {
        kinds: String,
    }
    let rows: Vec<Row> = prepare(&database(env)?, &index::export_kinds(tenant))?.all().await?.results()?;
    let mut filter = ExportFilter::default();
    for row in rows {
        let kinds: Vec<ExportKind> = serde_json::from_str(&row.kinds).unwrap_or_default();
        filter.0.extend(kinds);
    }
    Ok(filter)
}

/// Which waiting batches an export hands to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batches {
    /// Only full ones (from the send path).
    Full,
    /// Every one, the last partial too (the alarm).
    All,
}

impl RoomHost {
    /// Reads the tenant's export filter when this instance has none or it is over a minute old.
    pub async fn refresh_export_filter(&self, address: &RoomAddress) {
        let now = now_ms();
        if self.export.filter_read_ms.get().is_some_and(|at| now.saturating_sub(at) < FILTER_TTL_MS) {
            return;
        }
        match read_filter(&self.env, address.tenant()).await {
            Ok(filter) => {
                self.export.filter_read_ms.set(Some(now));
                if let Err(error) = self.with_room(|room| Ok(room.set_export_filter(filter)?)) {
                    tracing::error!(room = %address, %error, "setting the export filter failed");
                }
            }
            Err(error) => tracing::warn!(room = %address, %error, "reading the export filter failed"),
        }
    }

    /// Hands a full batch to the queue as soon as one waits (from the send path, after the events
    /// were stored), unless an export is under way; partial batches wait for the alarm.
    pub fn export_if_full(self: &Rc<Self>) {
        if self.export.sending.get()
            || self.timers.get().backing_off()
            || !self.with_room(|room| Ok(room.export_batch_full()?)).unwrap_or(false)
        {
            return;
        }
        let host = Rc::clone(self);
        worker::wasm_bindgen_futures::spawn_local(async move {
            host.export(Batches::Full).await;
        });
    }

    /// Hands waiting export batches to the queue (`Batches::Full`: only full ones); a failed
    /// send keeps the cursor and backs off. Returns `false` when something failed (the backoff
    /// decides when to try again). While another export runs it returns at once (`true`): that
    /// one carries on.
    pub async fn export(&self, batches: Batches) -> bool {
        if self.export.sending.replace(true) {
            return true;
        }
        let _sending = Sending(&self.export.sending);
        let faults = if Faults::allowed(&self.env) {
            self.with_room(|room| Ok(Faults::parse(&room.faults()?))).unwrap_or_default()
        } else {
            Faults::default()
        };
        for _ in 0..BATCHES_PER_ALARM {
            // Events that came during the last send would make a small batch: under load they
            // wait until they fill one (a queue message each, billed alike), or for the alarm.
            if batches == Batches::Full
                && !self.with_room(|room| Ok(room.export_batch_full()?)).unwrap_or(false)
            {
                return true;
            }
            let plan = match self.with_room(|room| Ok(room.export_plan()?)) {
                Ok(Some(plan)) => plan,
                Ok(None) => return true,
                Err(error) => {
                    tracing::error!(%error, "reading the export batch failed");
                    return false;
                }
            };
            if !plan.batch.events.is_empty() {
                let sent = send_batch_with(&self.env, faults, &plan.batch).await;
                if let Ok(bytes) = sent {
                    // Written now, read and deleted by the consumer: three operations per 64 KB.
                    let _ = self.with_room(|room| {
                        room.metrics_mut().queued(bytes);
                        Ok(())
                    });
                }
                if let Err(error) = sent {
                    tracing::warn!(room = %plan.batch.room, %error, "export send failed; retrying later");
                    let mut timers = self.timers.get();
                    timers.flush_failed(&self.schedule, now_ms(), None);
                    self.timers.set(timers);
                    return false;
                }
            }
            if let Err(error) = self.with_room(|room| Ok(room.exported(&plan)?)) {
                tracing::error!(%error, "moving the export cursor failed");
                return false;
            }
        }
        true
    }

    /// Whether export batches wait (the alarm must come back for them).
    pub fn export_pending(&self) -> Result<bool, ApiError> {
        self.with_room(|room| Ok(room.needs_export()?))
    }
}
