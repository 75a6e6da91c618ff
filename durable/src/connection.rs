//! What the room knows about one WebSocket connection.

use edgeroom_protocol::{Body, Format, Member, Right, Rights, MAX_SEQ};
use serde::{Deserialize, Serialize};

/// Per-connection data. The object shell keeps it in the socket's attachment (limit 16 KiB), so
/// it survives hibernation and eviction, which wipe Rust memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// Id within the room, from a persistent counter: never reused, also across restarts.
    pub id: u64,
    /// The form the server uses for frames to this connection: the form the client last sent.
    pub format: Format,
    /// Authenticated user id, when the router authenticated one.
    pub user: Option<String>,
    /// Presence data as JSON text (`None` until the client sets it).
    pub presence: Option<String>,
    /// Whether the connection got its `welcome` and receives room traffic.
    pub live: bool,
    /// What the connection may do, as the router authorized it.
    #[serde(default)]
    pub rights: Rights,
    /// The room's counts when this socket last carried them ([`crate::Metrics::carried`]):
    /// they survive hibernation with the socket, so what the room counted since its last save
    /// is not lost when it sleeps between flush checks. Empty on all but one socket, mostly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
}

impl Connection {
    /// Whether the connection takes part in presence: it sees members and is one.
    pub fn in_presence(&self) -> bool {
        self.live && self.rights.has(Right::Presence)
    }

    /// The connection as a presence member.
    pub fn member(&self) -> Member {
        let data = self.presence.as_deref().and_then(|text| Body::from_json(text).ok());
        Member { connection_id: self.id, user: self.user.clone(), data: data.unwrap_or_else(Body::null) }
    }
}

/// Longest epoch a client may name (the server's are 16 hex digits).
const MAX_EPOCH_LEN: usize = 64;

/// How a new connection starts, from the WebSocket URL's query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The form of frames the client gets until it sends one itself (`?format=json|binary`).
    pub format: Format,
    /// Authenticated user id, if any (set by the router, never by the query).
    pub user: Option<String>,
    /// Rights in the room (set by the router, never by the query).
    pub rights: Rights,
    /// Replay every event after this sequence number (`?resume_from=N`).
    pub resume_from: Option<u64>,
    /// The epoch `resume_from` counts in (`?epoch=E`); another epoch than the room's gets a `gap`.
    pub resume_epoch: Option<String>,
    /// Wait for the client's `hello` before sending the `welcome` and any room traffic
    /// (`?handshake=hello`).
    pub await_hello: bool,
}

impl ConnectOptions {
    /// Reads `format`, `resume_from`, `epoch` and `handshake` from query pairs; other names are
    /// ignored.
    pub fn from_query<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, String> {
        let mut options = Self::default();
        for (name, value) in pairs {
            let value = value.as_ref();
            match name.as_ref() {
                "format" => {
                    options.format = Format::from_name(value)
                        .ok_or_else(|| format!("unknown format {value:?}; use json or binary"))?;
                }
                "resume_from" => {
                    let seq = parse_seq(value).ok_or_else(|| {
                        format!("resume_from must be a sequence number up to {MAX_SEQ}, not {value:?}")
                    })?;
                    options.resume_from = Some(seq);
                }
                "epoch" => {
                    if value.is_empty() || value.len() > MAX_EPOCH_LEN {
                        return Err(format!("epoch must be 1 to {MAX_EPOCH_LEN} characters"));
                    }
                    options.resume_epoch = Some(value.to_owned());
                }
                "handshake" => match value {
                    "hello" => options.await_hello = true,
                    "none" => options.await_hello = false,
                    _ => return Err(format!("unknown handshake {value:?}; use hello or none")),
                },
                _ => {}
            }
        }
        Ok(options)
    }
}

/// A sequence number from a query: digits, at most [`MAX_SEQ`].
fn parse_seq(value: &str) -> Option<u64> {
    value.parse::<u64>().ok().filter(|seq| *seq <= MAX_SEQ)
}

/// The query of a history read: `after` (default 0) and `limit` (default 100, at most 1,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Events with `seq > after`.
    pub after: u64,
    /// At most this many events.
    pub limit: u64,
}

impl HistoryQuery {
    /// Largest page.
    pub const MAX_LIMIT: u64 = 1000;

    /// Reads `after` and `limit` from query pairs.
    pub fn from_query<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, String> {
        let mut query = Self { after: 0, limit: 100 };
        for (name, value) in pairs {
            let value = value.as_ref();
            match name.as_ref() {
                "after" => {
                    query.after = parse_seq(value)
                        .ok_or_else(|| format!("after must be a sequence number, not {value:?}"))?
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=Self::MAX_LIMIT).contains(limit))
                        .ok_or_else(|| format!("limit must be 1 to {}, not {value:?}", Self::MAX_LIMIT))?
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_options_parse_and_refuse_bad_values() {
        let options =
            ConnectOptions::from_query([("format", "binary"), ("resume_from", "42"), ("token", "x")])
                .unwrap();
        assert_eq!(options.format, Format::Binary);
        assert_eq!(options.resume_from, Some(42));
        assert!(!options.await_hello);
        assert!(ConnectOptions::from_query([("handshake", "hello")]).unwrap().await_hello);
        assert!(ConnectOptions::from_query([("format", "xml")]).is_err());
        assert!(ConnectOptions::from_query([("resume_from", "-1")]).is_err());
        assert!(ConnectOptions::from_query([("handshake", "maybe")]).is_err());
    }

    #[test]
    fn history_query_defaults_and_bounds() {
        let empty: [(&str, &str); 0] = [];
        assert_eq!(HistoryQuery::from_query(empty).unwrap(), HistoryQuery { after: 0, limit: 100 });
        assert_eq!(HistoryQuery::from_query([("after", "7"), ("limit", "1000")]).unwrap().limit, 1000);
        for bad in [
            ("limit", "0"),
            ("limit", "1001"),
            ("after", "x"),
            ("limit", "-1"),
            ("after", "9007199254740992"),
        ] {
            assert!(HistoryQuery::from_query([bad]).is_err(), "{bad:?}");
        }
    }
}
