//! Before a room object serves anything: it learns its names once per instance, and an object
//! whose storage is empty comes back from its newest readable snapshot (or refuses requests with
//! a retryable error while none can be loaded), so no seq is handed out twice.

use std::rc::Rc;

use edgeroom_protocol::RoomAddress;

use super::flush::restore_source;
use super::http::now_ms;
use super::room_host::RoomHost;
use crate::ApiError;

impl RoomHost {
    /// Learns the room's names once per instance, and makes sure an object with empty storage
    /// comes back from its snapshot before it serves anything.
    pub async fn prepare(self: &Rc<Self>, address: &RoomAddress) -> Result<(), ApiError> {
        let first_use = self.address.borrow().is_none();
        if first_use {
            self.with_room(|room| Ok(room.remember_names(address.tenant(), address.room())?))?;
            *self.address.borrow_mut() = Some(address.clone());
        }
        if !self.gate.borrow().should_try(now_ms()) {
            if first_use {
                self.refresh_export_filter(address).await;
            }
            return self.gate.borrow().check();
        }
        // Other requests wait: nothing may hand out a seq before the restore decided. The export
        // filter and the restore check both read D1: at the same time, so a new room's first
        // request waits for one round trip, not one after the other.
        let host = Rc::clone(self);
        let address = address.clone();
        self.state
            .block_concurrency_while(async move {
                let filter = async {
                    if first_use {
                        host.refresh_export_filter(&address).await;
                    }
                };
                futures_util::future::join(filter, host.restore_if_empty(&address)).await;
                Ok(())
            })
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        self.gate.borrow().check()
    }

    async fn restore_if_empty(&self, address: &RoomAddress) {
        let outcome = match self.with_room(|room| Ok(room.is_empty()?)) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let source = restore_source(&self.env, address).await;
                self.with_room(|room| Ok(room.restore_from(source))).unwrap_or_else(|e| Err(e.message))
            }
            Err(error) => Err(error.message),
        };
        match &outcome {
            Ok(Some(seq)) => {
                tracing::warn!(room = %address, seq, "storage was empty: restored the newest readable snapshot")
            }
            Err(reason) => {
                tracing::error!(room = %address, %reason, "storage is empty and no snapshot could be restored")
            }
            Ok(None) => {}
        }
        self.gate.borrow_mut().settle(outcome.map(|_| ()), now_ms());
    }
}
