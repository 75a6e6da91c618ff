//! Event export: what a room hands to the export queue, and how each batch is signed for a
//! webhook endpoint (the Standard Webhooks convention).
//!
//! Every exported event has an id that is stable across retries, so receivers deduplicate:
//! `<tenant>/<room>/<epoch>/<seq>` for sequenced events, `<tenant>/<room>/<epoch>/x<n>` for
//! presence and occupancy events (numbered by the room's `export` sequence).

use std::collections::BTreeSet;

use base64::Engine;
use edgeroom_protocol::{Body, Event, EventKind};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ApiError;

/// What a tenant may export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportKind {
    /// A published message.
    Message,
    /// A state key was set.
    StateSet,
    /// A state key was deleted.
    StateDelete,
    /// A member joined.
    PresenceJoin,
    /// A member left.
    PresenceLeave,
    /// The room got its first connection.
    RoomOccupied,
    /// The room lost its last connection.
    RoomVacated,
}

impl ExportKind {
    /// Every kind.
    pub const ALL: [ExportKind; 7] = [
        Self::Message,
        Self::StateSet,
        Self::StateDelete,
        Self::PresenceJoin,
        Self::PresenceLeave,
        Self::RoomOccupied,
        Self::RoomVacated,
    ];

    /// The kind of a sequenced event.
    pub fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::Message => Self::Message,
            EventKind::StateSet => Self::StateSet,
            EventKind::StateDelete => Self::StateDelete,
        }
    }

    /// Whether the kind comes from the room's history (`seq` ordered) rather than presence.
    pub fn is_sequenced(self) -> bool {
        matches!(self, Self::Message | Self::StateSet | Self::StateDelete)
    }
}

/// The kinds a room exports: the union of its tenant's endpoint filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter(pub BTreeSet<ExportKind>);

impl ExportFilter {
    /// Whether nothing is exported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `kind` is exported.
    pub fn wants(&self, kind: ExportKind) -> bool {
        self.0.contains(&kind)
    }

    /// Whether any presence or occupancy kind is exported (those need an outbox row).
    pub fn wants_presence(&self) -> bool {
        self.0.iter().any(|kind| !kind.is_sequenced())
    }
}

/// One exported event, as webhook receivers get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportEvent {
    /// Stable id: the same on every delivery attempt.
    pub id: String,
    /// What happened.
    pub kind: ExportKind,
    /// The room's epoch.
    pub epoch: String,
    /// The event's seq (sequenced kinds only).
    pub seq: Option<u64>,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The sender's or member's connection id.
    pub connection_id: Option<u64>,
    /// The member's user id (presence kinds), when known.
    pub user: Option<String>,
    /// The state key (state kinds).
    pub key: Option<String>,
    /// The message topic.
    pub topic: Option<String>,
    /// The message, the new state value, or the member's presence data.
    pub body: Body,
}

impl ExportEvent {
    /// The export of a stored event.
    pub fn sequenced(tenant: &str, room: &str, epoch: &str, event: &Event, at_ms: u64) -> Self {
        Self {
            id: format!("{tenant}/{room}/{epoch}/{}", event.seq),
            kind: ExportKind::of(event.kind),
            epoch: epoch.to_owned(),
            seq: Some(event.seq),
            at_ms,
            connection_id: event.sender,
            user: None,
            key: event.key.clone(),
            topic: event.topic.clone(),
            body: event.body.clone(),
        }
    }
}

/// One queue message: a batch of one room's events, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBatch {
    /// Stable id of the batch (its first event's id): the webhook's `webhook-id`.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The room.
    pub room: String,
    /// The events.
    pub events: Vec<ExportEvent>,
}

/// Shortest webhook secret accepted, in bytes (after decoding a `whsec_` secret).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 24;

/// The HMAC key of a webhook secret: `whsec_<base64>` (the Standard Webhooks form) or raw text.
pub fn webhook_key(secret: &str) -> Result<Vec<u8>, ApiError> {
    let key = match secret.strip_prefix("whsec_") {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ApiError::bad_request("a whsec_ secret must be base64 after the prefix"))?,
        None => secret.as_bytes().to_vec(),
    };
    if key.len() < MIN_WEBHOOK_SECRET_BYTES {
        return Err(ApiError::bad_request(format!(
            "webhook secrets are at least {MIN_WEBHOOK_SECRET_BYTES} bytes"
        )));
    }
    Ok(key)
}

/// The `webhook-signature` header value for a delivery: `v1,<base64 HMAC-SHA256 of
/// "<id>.<timestamp>.<body>">`.
pub fn sign_webhook(key: &[u8], id: &str, timestamp_secs: u64, body: &str) -> Result<String, ApiError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| ApiError::internal(e.to_string()))?;
    mac.update(format!("{id}.{timestamp_secs}.{body}").as_bytes());
    Ok(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// Checks a webhook endpoint's URL: https, or http to a loopback host when `allow_loopback`
/// (local runs, so tests and development can receive on this machine).
pub fn check_endpoint_url(url: &str, allow_loopback: bool) -> Result<(), ApiError> {
    let refuse =
        || ApiError::bad_request(format!("{url:?} is not an https URL (http only to loopback in dev)"));
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
        if !(allow_loopback && edgeroom_protocol::is_loopback_host(host)) {
            return Err(refuse());
        }
        rest
    } else {
        return Err(refuse());
    };
    if rest.is_empty() || rest.starts_with('/') || url.len() > 2048 {
        return Err(refuse());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The example of the Standard Webhooks specification.
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let signature = sign_webhook(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(webhook_key("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(webhook_key("whsec_!!!").is_err());
        assert!(webhook_key("a-plain-text-secret-of-enough-length").is_ok());
    }

    #[test]
    fn endpoints_must_be_https_except_loopback_in_dev() {
        assert!(check_endpoint_url("https://example.com/hooks", false).is_ok());
        assert!(check_endpoint_url("http://example.com/hooks", true).is_err());
        assert!(check_endpoint_url("http://127.0.0.1:9999/hooks", true).is_ok());
        assert!(check_endpoint_url("http://127.0.0.1:9999/hooks", false).is_err());
        assert!(check_endpoint_url("ftp://example.com", true).is_err());
        assert!(check_endpoint_url("https://", false).is_err());
    }

    #[test]
    fn filters_and_ids() {
        let filter = ExportFilter([ExportKind::Message, ExportKind::RoomVacated].into_iter().collect());
        assert!(filter.wants(ExportKind::Message) && !filter.wants(ExportKind::StateSet));
        assert!(filter.wants_presence());
        let event = Event {
            seq: 7,
            kind: EventKind::StateSet,
            body: Body::from_value(&1).unwrap(),
            sender: Some(2),
            topic: None,
            key: Some("k".into()),
        };
        let exported = ExportEvent::sequenced("acme", "lobby", "e1", &event, 5);
        assert_eq!((exported.id.as_str(), exported.kind), ("acme/lobby/e1/7", ExportKind::StateSet));
        assert_eq!(serde_json::to_value(ExportKind::PresenceJoin).unwrap(), "presence_join");
    }
}
