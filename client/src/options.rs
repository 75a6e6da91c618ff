//! [`RoomOptions`]: where a room is, how to authenticate, and the client's limits and timings.

use std::time::Duration;

use edgeroom_protocol::{validate_name, Format, RoomAddress, Route};
use reqwest::Url;

use crate::{Error, Position, ReconnectPolicy, TokenSource};

/// Everything [`crate::Room::connect`] needs. Build with [`RoomOptions::new`] and the `with_*`
/// methods; every field is public too.
#[derive(Clone)]
pub struct RoomOptions {
    /// Base URL of the service: `http://127.0.0.1:8787`, `https://edgeroom.example.com` (`ws`/`wss`
    /// work too).
    pub url: String,
    /// The tenant.
    pub tenant: String,
    /// The room.
    pub room: String,
    /// The token (sent as `Authorization: Bearer`); `None` only works against a local dev server.
    pub token: Option<String>,
    /// Where to get a fresh token for each connection (takes precedence over `token`).
    pub token_source: Option<TokenSource>,
    /// Frame form: binary (postcard, the default) or JSON.
    pub format: Format,
    /// Where to start: `None` starts at the room's current state; a [`Position`] (for example one
    /// saved by an earlier run from [`crate::Room::position`]) replays every event after it.
    pub resume: Option<Position>,
    /// How often to send the heartbeat (the text frame `ping`).
    pub heartbeat_interval: Duration,
    /// A link over which nothing arrives for this long (heartbeat answers included) is dropped and
    /// resumed.
    pub heartbeat_timeout: Duration,
    /// How long an operation may wait for its ack, counted from the call.
    pub op_ttl: Duration,
    /// Most operations waiting for an ack at once.
    pub max_pending_ops: usize,
    /// Most bytes of encoded operations waiting for an ack at once.
    pub max_pending_bytes: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The reconnect schedule.
    pub reconnect: ReconnectPolicy,
    /// Events held for the app before the client stops reading the socket (backpressure).
    pub event_buffer: usize,
    /// Largest frame the server accepts (its `MAX_FRAME_BYTES`): a bigger operation fails at once
    /// with [`crate::OpError::TooLarge`] (the server would refuse it without naming it).
    pub max_frame_bytes: usize,
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("RoomOptions")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("room", &self.room)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("token_source", &self.token_source.as_ref().map(|_| "…"))
            .field("format", &self.format)
            .field("resume", &self.resume)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("heartbeat_timeout", &self.heartbeat_timeout)
            .field("op_ttl", &self.op_ttl)
            .field("max_pending_ops", &self.max_pending_ops)
            .field("max_pending_bytes", &self.max_pending_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect", &self.reconnect)
            .field("event_buffer", &self.event_buffer)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .finish()
    }
}

impl RoomOptions {
    /// Options for `tenant/room` at `url`, with the defaults: binary frames, heartbeat every 15 s and
    /// a dead link noticed after 30 s, operations kept 30 s, at most 1,000 operations or 1 MiB
    /// waiting.
    pub fn new(url: impl Into<String>, tenant: impl Into<String>, room: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tenant: tenant.into(),
            room: room.into(),
            token: None,
            token_source: None,
            format: Format::Binary,
            resume: None,
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(30),
            op_ttl: Duration::from_secs(30),
            max_pending_ops: 1000,
            max_pending_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            event_buffer: 4096,
            max_frame_bytes: 64 * 1024,
        }
    }

    /// Authenticates with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Gets a fresh token from `source` before each connection, so the client outlives the
    /// expiry of its tokens.
    pub fn with_token_source(mut self, source: TokenSource) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Speaks `format` (JSON frames are larger and slower to decode; binary is the default).
    pub fn with_format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Starts after `position` instead of at the room's current state.
    pub fn with_resume(mut self, position: Position) -> Self {
        self.resume = Some(position);
        self
    }

    /// Sends heartbeats every `interval` and drops a link silent for `timeout`.
    pub fn with_heartbeat(mut self, interval: Duration, timeout: Duration) -> Self {
        self.heartbeat_interval = interval;
        self.heartbeat_timeout = timeout;
        self
    }

    /// Gives each operation `ttl` to be acknowledged.
    pub fn with_op_ttl(mut self, ttl: Duration) -> Self {
        self.op_ttl = ttl;
        self
    }

    /// Bounds the operations waiting for an ack.
    pub fn with_pending_limits(mut self, max_ops: usize, max_bytes: usize) -> Self {
        self.max_pending_ops = max_ops;
        self.max_pending_bytes = max_bytes;
        self
    }

    /// Uses `policy` to reconnect.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The validated room address.
    pub(crate) fn address(&self) -> Result<RoomAddress, Error> {
        RoomAddress::new(&self.tenant, &self.room).map_err(|e| Error::InvalidOptions(e.to_string()))
    }

    /// The WebSocket URL for a connection that resumes after `position` (if any).
    pub(crate) fn socket_url(&self, position: Option<&Position>) -> Result<Url, Error> {
        let mut url = socket_base(&self.url, &Route::RoomSocket(self.address()?).path())?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("format", self.format.as_str());
            if let Some(position) = position {
                query.append_pair("resume_from", &position.seq.to_string());
                if let Some(epoch) = &position.epoch {
                    query.append_pair("epoch", epoch);
                }
            }
        }
        Ok(url)
    }
}

/// The path of a counter route (`suffix` is `""`, `/ws`, `/add`, …), names checked. Built here
/// rather than through `Route` so the client does not depend on how the protocol crate types
/// counter addresses.
pub(crate) fn counter_path(tenant: &str, name: &str, suffix: &str) -> Result<String, Error> {
    validate_name("tenant", tenant).map_err(|e| Error::InvalidOptions(e.to_string()))?;
    validate_name("counter", name).map_err(|e| Error::InvalidOptions(e.to_string()))?;
    Ok(format!("/v1/t/{tenant}/counters/{name}{suffix}"))
}

/// Parses a base URL, checking its scheme.
pub(crate) fn parse_base(base: &str) -> Result<Url, Error> {
    let url = Url::parse(base).map_err(|e| Error::InvalidOptions(format!("bad URL {base:?}: {e}")))?;
    match url.scheme() {
        "https" | "wss" if !cfg!(feature = "tls") => Err(Error::InvalidOptions(format!(
            "{base} needs TLS: build edgeroom-client with its `tls` feature"
        ))),
        "http" | "https" | "ws" | "wss" => Ok(url),
        other => Err(Error::InvalidOptions(format!("URL scheme must be http(s) or ws(s), not {other:?}"))),
    }
}

/// `base` with `path`, as an `http`/`https` URL.
pub(crate) fn http_url(base: &str, path: &str) -> Result<Url, Error> {
    with_path(base, path, |scheme| {
        if scheme == "ws" {
            "http"
        } else if scheme == "wss" {
            "https"
        } else {
            scheme
        }
    })
}

/// `base` with `path`, as a `ws`/`wss` URL.
pub(crate) fn socket_base(base: &str, path: &str) -> Result<Url, Error> {
    with_path(base, path, |scheme| {
        if scheme == "http" {
            "ws"
        } else if scheme == "https" {
            "wss"
        } else {
            scheme
        }
    })
}

fn with_path(base: &str, path: &str, scheme: impl Fn(&str) -> &str) -> Result<Url, Error> {
    let parsed = parse_base(base)?;
    let prefix = parsed.path().trim_end_matches('/');
    let text = format!(
        "{}://{}{}{prefix}{path}",
        scheme(parsed.scheme()),
        parsed.host_str().unwrap_or_default(),
        parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
    );
    Url::parse(&text).map_err(|e| Error::InvalidOptions(format!("bad URL {text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_carry_format_and_resume_position() {
        let options = RoomOptions::new("http://127.0.0.1:8787", "acme", "lobby");
        assert_eq!(
            options.socket_url(None).unwrap().as_str(),
            "ws://127.0.0.1:8787/v1/t/acme/rooms/lobby/ws?format=binary"
        );
        let position = Position { epoch: Some("ab12".into()), seq: 41 };
        assert_eq!(
            options.socket_url(Some(&position)).unwrap().as_str(),
            "ws://127.0.0.1:8787/v1/t/acme/rooms/lobby/ws?format=binary&resume_from=41&epoch=ab12"
        );
        let tls = RoomOptions::new("https://rooms.example.com/", "a", "b").with_format(Format::Json);
        if cfg!(feature = "tls") {
            assert_eq!(
                tls.socket_url(None).unwrap().as_str(),
                "wss://rooms.example.com/v1/t/a/rooms/b/ws?format=json"
            );
        } else {
            assert!(
                matches!(tls.socket_url(None), Err(Error::InvalidOptions(m)) if m.contains("`tls` feature"))
            );
        }
    }

    #[test]
    fn bad_names_and_urls_are_refused_before_connecting() {
        assert!(matches!(
            RoomOptions::new("http://x", "acme", "no spaces").socket_url(None),
            Err(Error::InvalidOptions(_))
        ));
        assert!(matches!(parse_base("ftp://x"), Err(Error::InvalidOptions(_))));
        assert!(matches!(parse_base("not a url"), Err(Error::InvalidOptions(_))));
    }
}
