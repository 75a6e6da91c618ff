//! [`Counter`]: a live subscription to one counter, with acknowledged writes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use edgeroom_protocol::{CounterAdd, CounterReset, CounterSet, CounterValue, Format, ServerMessage};
use futures_util::Stream;
use reqwest::Url;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::driver::{DriverHandle, LinkConfig, Session};
use crate::options::{counter_path, socket_base};
use crate::token::Credentials;
use crate::{ConnectionState, Error, OpError, Operation, ReconnectPolicy, TokenSource};

/// Where a counter is and how to reach it. Build with [`CounterOptions::new`].
#[derive(Clone)]
pub struct CounterOptions {
    /// Base URL of the service.
    pub url: String,
    /// The tenant.
    pub tenant: String,
    /// The counter's name.
    pub name: String,
    /// The token; `None` only works against a local dev server.
    pub token: Option<String>,
    /// Where to get a fresh token for each connection (takes precedence over `token`).
    pub token_source: Option<TokenSource>,
    /// Frame form (binary by default).
    pub format: Format,
    /// How often to send the heartbeat.
    pub heartbeat_interval: Duration,
    /// A link silent for this long is dropped and reopened.
    pub heartbeat_timeout: Duration,
    /// How long a write may wait for its ack.
    pub op_ttl: Duration,
    /// Most writes waiting for an ack at once.
    pub max_pending_ops: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// The reconnect schedule.
    pub reconnect: ReconnectPolicy,
}

impl std::fmt::Debug for CounterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("CounterOptions")
            .field("url", &self.url)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl CounterOptions {
    /// Options for counter `name` of `tenant` at `url`, with the same defaults as rooms.
    pub fn new(url: impl Into<String>, tenant: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tenant: tenant.into(),
            name: name.into(),
            token: None,
            token_source: None,
            format: Format::Binary,
            heartbeat_interval: Duration::from_secs(15),
            heartbeat_timeout: Duration::from_secs(30),
            op_ttl: Duration::from_secs(30),
            max_pending_ops: 1000,
            connect_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
        }
    }

    /// Authenticates with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Gets a fresh token from `source` before each connection.
    pub fn with_token_source(mut self, source: TokenSource) -> Self {
        self.token_source = Some(source);
        self
    }
}

/// What a counter subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterEvent {
    /// The counter's value after a change (or on (re)subscribing); versions only grow.
    Value(CounterValue),
    /// A write failed whose [`Operation`] was dropped.
    OpFailed(OpError),
    /// A problem the client handles itself (lost link, malformed frame), reported.
    Error(Error),
}

/// A live counter. Cheap to clone.
#[derive(Clone)]
pub struct Counter {
    driver: DriverHandle,
    value: Arc<Mutex<Option<CounterValue>>>,
}

/// The counter's values as they change.
pub struct CounterEvents {
    receiver: mpsc::Receiver<CounterEvent>,
}

impl Counter {
    /// Subscribes; resolves once the socket is open.
    pub async fn connect(options: CounterOptions) -> Result<(Counter, CounterEvents), Error> {
        let mut url = socket_base(&options.url, &counter_path(&options.tenant, &options.name, "/ws")?)?;
        url.query_pairs_mut().append_pair("format", options.format.as_str());
        let value = Arc::new(Mutex::new(None));
        let config = LinkConfig {
            credentials: Credentials::new(options.token, options.token_source),
            format: options.format,
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            connect_timeout: options.connect_timeout,
            reconnect: options.reconnect,
            op_ttl: options.op_ttl,
            max_pending_ops: options.max_pending_ops,
            max_pending_bytes: 1 << 20,
            event_buffer: 1024,
            max_frame_bytes: 64 * 1024,
        };
        let (driver, receiver) =
            DriverHandle::start(CounterSession { url, value: value.clone() }, config).await?;
        Ok((Counter { driver, value }, CounterEvents { receiver }))
    }

    /// Adds `delta`; resolves to the counter's version after the write.
    pub fn add(&self, delta: i64) -> Operation {
        let op_id = Uuid::new_v4();
        self.driver.submit(op_id, CounterAdd { op_id, delta }.into())
    }

    /// Sets the value (unsharded counters only).
    pub fn set(&self, value: i64) -> Operation {
        let op_id = Uuid::new_v4();
        self.driver.submit(op_id, CounterSet { op_id, value }.into())
    }

    /// Resets the value to zero.
    pub fn reset(&self) -> Operation {
        let op_id = Uuid::new_v4();
        self.driver.submit(op_id, CounterReset { op_id }.into())
    }

    /// The last value received.
    pub fn value(&self) -> Option<CounterValue> {
        self.value.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// The connection state now.
    pub fn connection_state(&self) -> ConnectionState {
        self.driver.state()
    }

    /// A receiver of every change of the connection state.
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.driver.watch()
    }

    /// Closes the subscription.
    pub async fn close(&self) {
        self.driver.close().await;
    }
}

impl CounterEvents {
    /// The next event, or `None` once the counter is closed.
    pub async fn recv(&mut self) -> Option<CounterEvent> {
        self.receiver.recv().await
    }
}

impl Stream for CounterEvents {
    type Item = CounterEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CounterEvent>> {
        self.receiver.poll_recv(cx)
    }
}

struct CounterSession {
    url: Url,
    value: Arc<Mutex<Option<CounterValue>>>,
}

impl Session for CounterSession {
    type Event = CounterEvent;

    fn url(&self) -> Result<Url, Error> {
        Ok(self.url.clone())
    }

    fn ready_on_open(&self) -> bool {
        true
    }

    fn on_message(&mut self, message: ServerMessage, out: &mut Vec<CounterEvent>) -> Result<bool, Error> {
        let ServerMessage::Counter(value) = message else {
            return Err(Error::Unexpected(format!("a {} frame on a counter socket", message.type_name())));
        };
        let mut last = self.value.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // After a reconnect the server repeats the current value: show each version once.
        if last.as_ref().is_none_or(|seen| value.version > seen.version) {
            *last = Some(value.clone());
            out.push(CounterEvent::Value(value));
        }
        Ok(false)
    }

    fn error_event(error: Error) -> CounterEvent {
        CounterEvent::Error(error)
    }

    fn op_failed_event(error: OpError) -> CounterEvent {
        CounterEvent::OpFailed(error)
    }
}
