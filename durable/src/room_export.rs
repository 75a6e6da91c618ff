//! The room's side of event export: a cursor (the last `seq` handed to the export queue) and an
//! outbox for presence and occupancy events. Export reads history after the cursor, so a
//! message costs no extra row; the cursor moves only after the queue took the batch, so a
//! failed send is retried from the same point (at least once, in `seq` order).

use crate::export::{ExportBatch, ExportEvent, ExportFilter, ExportKind};
use crate::{Connection, Room, Sql, StoreError};

/// Meta key of the export cursor.
const EXPORTED_SEQ_META: &str = "exported_seq";
/// The persistent sequence that numbers presence and occupancy exports.
const EXPORT_IDS: &str = "export";
/// Most events one export batch carries. Fewer, fuller batches cost fewer queue operations and
/// POSTs; with `BATCH_BYTES` a batch of small events stays under 64 KB, one billed operation per
/// write (an event's envelope is about 250 bytes of JSON).
const BATCH_EVENTS: u64 = 100;
/// Bytes of bodies after which an export batch takes no more events (Queues take messages up to
/// 128 KB; one body over this goes alone).
const BATCH_BYTES: usize = 32 * 1024;

/// One batch to hand to the export queue, and where the cursors move once it is taken.
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// The batch (may be empty when every pending event was filtered out).
    pub batch: ExportBatch,
    after_seq: u64,
    outbox_upto: Option<u64>,
}

impl<S: Sql> Room<S> {
    /// Sets what the tenant exports. Export starts at the current seq: events from before an
    /// endpoint existed are not sent.
    pub fn set_export_filter(&mut self, filter: ExportFilter) -> Result<(), StoreError> {
        if filter.is_empty() || self.store.meta(EXPORTED_SEQ_META)?.is_none() {
            let seq = self.last_seq()?;
            self.store.set_meta(EXPORTED_SEQ_META, &seq.to_string())?;
            self.export_cursor = Some(seq);
        }
        self.export_filter = filter;
        Ok(())
    }

    /// What the room exports.
    pub fn export_filter(&self) -> &ExportFilter {
        &self.export_filter
    }

    /// The seq up to which events were handed to the export queue; history keeps the rest.
    pub(crate) fn exported_seq(&mut self) -> Result<u64, StoreError> {
        if let Some(seq) = self.export_cursor {
            return Ok(seq);
        }
        let seq = match self.store.meta(EXPORTED_SEQ_META)? {
            None => u64::MAX,
            Some(text) => text.parse().map_err(|_| StoreError::BadRow("export cursor"))?,
        };
        self.export_cursor = Some(seq);
        Ok(seq)
    }

    /// Whether a full batch of events waits for export: it leaves from the send path at once
    /// instead of with the rest at the next alarm (a burst that busy rooms felt in their latency).
    /// Reads no storage once the cursor is known.
    pub fn export_batch_full(&mut self) -> Result<bool, StoreError> {
        if self.export_filter.is_empty() {
            return Ok(false);
        }
        let waiting = self.last_seq()?.saturating_sub(self.exported_seq()?);
        Ok(waiting >= BATCH_EVENTS)
    }

    /// Whether events wait for export.
    pub fn needs_export(&mut self) -> Result<bool, StoreError> {
        if self.export_filter.is_empty() {
            return Ok(false);
        }
        Ok(self.exported_seq()? < self.last_seq()? || !self.store.export_outbox(1)?.is_empty())
    }

    /// The next batch to export: sequenced events after the cursor (filtered), then queued
    /// presence and occupancy events. `None` when nothing waits.
    pub fn export_plan(&mut self) -> Result<Option<ExportPlan>, StoreError> {
        if !self.needs_export()? {
            return Ok(None);
        }
        let Some((tenant, room)) = self.names()? else { return Ok(None) };
        let epoch = self.epoch()?;
        let from = self.exported_seq()?;
        let stored = self.store.events_page(from, BATCH_EVENTS, BATCH_BYTES)?;
        let after_seq = stored.last().map_or(from, |last| last.event.seq);
        let mut events: Vec<ExportEvent> = stored
            .iter()
            .filter(|stored| self.export_filter.wants(ExportKind::of(stored.event.kind)))
            .map(|stored| ExportEvent::sequenced(&tenant, &room, &epoch, &stored.event, stored.at_ms))
            .collect();
        let mut outbox_upto = None;
        if stored.is_empty() {
            for (id, json) in self.store.export_outbox(BATCH_EVENTS)? {
                outbox_upto = Some(id);
                // A row that does not parse is dropped with the batch rather than block export.
                if let Ok(event) = serde_json::from_str(&json) {
                    events.push(event);
                }
            }
        }
        let id = events.first().map_or_else(|| format!("{tenant}/{room}/{epoch}/empty"), |e| e.id.clone());
        Ok(Some(ExportPlan { batch: ExportBatch { id, tenant, room, events }, after_seq, outbox_upto }))
    }

    /// The queue took `plan`'s batch: move the cursors past it.
    pub fn exported(&mut self, plan: &ExportPlan) -> Result<(), StoreError> {
        self.store.set_meta(EXPORTED_SEQ_META, &plan.after_seq.to_string())?;
        self.export_cursor = Some(plan.after_seq);
        if let Some(id) = plan.outbox_upto {
            self.store.drop_exported(id)?;
        }
        Ok(())
    }

    /// Queues a presence or occupancy event for export, if the tenant exports its kind.
    pub(crate) fn export_presence(
        &mut self,
        kind: ExportKind,
        connection: Option<&Connection>,
    ) -> Result<(), StoreError> {
        if !self.export_filter.wants(kind) {
            return Ok(());
        }
        let Some((tenant, room)) = self.names()? else { return Ok(()) };
        let epoch = self.epoch()?;
        let n = self.store.next_in_sequence(EXPORT_IDS)?;
        let member = connection.map(Connection::member);
        let event = ExportEvent {
            id: format!("{tenant}/{room}/{epoch}/x{n}"),
            kind,
            epoch,
            seq: None,
            at_ms: self.clock_ms,
            connection_id: member.as_ref().map(|m| m.connection_id),
            user: member.as_ref().and_then(|m| m.user.clone()),
            key: None,
            topic: None,
            body: member.map_or_else(edgeroom_protocol::Body::null, |m| m.data),
        };
        let json = serde_json::to_string(&event).map_err(|_| StoreError::BadRow("export event"))?;
        self.store.push_export(&json)
    }
}
