//! The task behind every room and counter handle: it owns the socket, reconnects with backoff,
//! sends heartbeats, keeps operations until their outcome is known, and re-sends them after a
//! reconnect. What the messages mean is the [`Session`]'s business (`room.rs`, `counter.rs`).

use std::time::Duration;

use edgeroom_protocol::{ClientMessage, ErrorCode, ErrorFrame, Format, ServerMessage};
use reqwest::Url;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use uuid::Uuid;

use crate::connection::{Connection, Inbound};
use crate::pending::{PendingOp, PendingOps};
use crate::token::Credentials;
use crate::{ConnectionState, Error, OpError, Operation, ReconnectPolicy};

/// What a handle asks of its driver.
pub(crate) enum Command {
    /// Send an operation and report its outcome.
    Op(PendingOp),
    /// Send a message now and again after every reconnect (presence data lives with the connection).
    Sticky(ClientMessage),
    /// Close the connection and stop.
    Close,
}

/// The protocol-specific half of a driver.
pub(crate) trait Session: Send + 'static {
    /// What the app's stream yields.
    type Event: Send + 'static;

    /// The URL of the next connection (a room resumes from its position).
    fn url(&self) -> Result<Url, Error>;

    /// Whether the session is usable as soon as the socket opens (otherwise after the message for
    /// which [`Session::on_message`] returns `true`).
    fn ready_on_open(&self) -> bool;

    /// Handles a message that is not an ack, an operation's error or a pong; returns whether the
    /// session just became ready. An error ends the connection and the driver reconnects.
    fn on_message(&mut self, message: ServerMessage, out: &mut Vec<Self::Event>) -> Result<bool, Error>;

    /// The stream item that reports an error.
    fn error_event(error: Error) -> Self::Event;

    /// The stream item that reports a failed operation nobody awaits.
    fn op_failed_event(error: OpError) -> Self::Event;
}

/// Link settings a driver needs.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub(crate) credentials: Credentials,
    pub(crate) format: Format,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) op_ttl: Duration,
    pub(crate) max_pending_ops: usize,
    pub(crate) max_pending_bytes: usize,
    pub(crate) event_buffer: usize,
    pub(crate) max_frame_bytes: usize,
}

/// How one connection ended.
enum SessionEnd {
    /// The link failed; reconnect.
    Lost(Error),
    /// Retrying cannot help.
    Fatal(Error),
    /// The app closed the handle.
    ClosedByApp,
}

/// The handle side: submits commands, watches the connection state.
#[derive(Clone)]
pub(crate) struct DriverHandle {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<ConnectionState>,
    op_ttl: Duration,
    format: Format,
    max_frame_bytes: usize,
}

impl DriverHandle {
    /// Opens the first connection, starts the driver, and waits until the session is ready.
    /// Returns the handle and the app's event stream.
    pub(crate) async fn start<S: Session>(
        session: S,
        config: LinkConfig,
    ) -> Result<(Self, mpsc::Receiver<S::Event>), Error> {
        let token = config.credentials.token().await?;
        let first =
            Connection::open(&session.url()?, token.as_deref(), config.format, config.connect_timeout)
                .await?;
        let (commands, command_receiver) = mpsc::unbounded_channel();
        let (events, event_receiver) = mpsc::channel(config.event_buffer.max(1));
        let (status, mut status_receiver) = watch::channel(ConnectionState::Connecting { attempt: 0 });
        let (op_ttl, format, max_frame_bytes) = (config.op_ttl, config.format, config.max_frame_bytes);
        let driver = Driver {
            pending: PendingOps::new(config.max_pending_ops, config.max_pending_bytes),
            session,
            config,
            commands: command_receiver,
            events,
            status,
            sticky: None,
            resend_at: None,
        };
        let timeout = config_timeout(&driver.config);
        tokio::spawn(driver.run(first));
        let opened = status_receiver
            .wait_for(|state| matches!(state, ConnectionState::Open | ConnectionState::Closed { .. }));
        let outcome = match tokio::time::timeout(timeout, opened).await {
            Ok(outcome) => outcome.map(|state| state.clone()),
            Err(_) => {
                let _ = commands.send(Command::Close);
                return Err(Error::Network(format!("the session did not open within {timeout:?}")));
            }
        };
        match outcome {
            Ok(ConnectionState::Closed { reason }) => Err(reason),
            Ok(_) => {
                let handle = Self { commands, status: status_receiver, op_ttl, format, max_frame_bytes };
                Ok((handle, event_receiver))
            }
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// Queues an operation; its outcome arrives through the returned [`Operation`].
    pub(crate) fn submit(&self, op_id: Uuid, message: ClientMessage) -> Operation {
        let bytes = message.encode(self.format).len();
        if bytes > self.max_frame_bytes {
            return Operation::failed(OpError::TooLarge { op_id, bytes, limit: self.max_frame_bytes });
        }
        let (reply, receiver) = oneshot::channel();
        let op =
            PendingOp { op_id, message, bytes, deadline: Instant::now() + self.op_ttl, sent: false, reply };
        match self.commands.send(Command::Op(op)) {
            Ok(()) => Operation::waiting(op_id, receiver),
            Err(_) => Operation::failed(OpError::Closed { op_id, reason: "the client is closed".into() }),
        }
    }

    /// Sends `message` now and after every reconnect.
    pub(crate) fn sticky(&self, message: ClientMessage) -> Result<(), Error> {
        self.commands.send(Command::Sticky(message)).map_err(|_| Error::Shutdown)
    }

    /// The connection state now.
    pub(crate) fn state(&self) -> ConnectionState {
        self.status.borrow().clone()
    }

    /// A receiver of every change of the connection state.
    pub(crate) fn watch(&self) -> watch::Receiver<ConnectionState> {
        self.status.clone()
    }

    /// Closes the connection; waiting operations fail with [`OpError::Closed`].
    pub(crate) async fn close(&self) {
        if self.commands.send(Command::Close).is_ok() {
            let mut status = self.status.clone();
            let _ = status.wait_for(|state| matches!(state, ConnectionState::Closed { .. })).await;
        }
    }
}

struct Driver<S: Session> {
    session: S,
    config: LinkConfig,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<S::Event>,
    status: watch::Sender<ConnectionState>,
    pending: PendingOps,
    sticky: Option<ClientMessage>,
    /// When to send the waiting operations again after a refusal that named none of them.
    resend_at: Option<Instant>,
}

/// How long a session must last for the next reconnect to start a fresh backoff schedule.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// How long to wait before re-sending operations after an anonymous `rate_limited` refusal.
const RESEND_AFTER_REFUSAL: Duration = Duration::from_secs(1);

impl<S: Session> Driver<S> {
    async fn run(mut self, first: Connection) {
        let mut connection = Some(first);
        let mut delays = self.config.reconnect.delays();
        let mut attempt = 0;
        let mut last_error = Error::Shutdown;
        loop {
            if let Some(open) = connection.take() {
                let opened = Instant::now();
                let (end, was_ready) = self.serve(open).await;
                match end {
                    SessionEnd::ClosedByApp => return self.shut(Error::Shutdown).await,
                    SessionEnd::Fatal(error) => return self.shut(error).await,
                    SessionEnd::Lost(error) => {
                        tracing::info!(%error, "connection lost; reconnecting");
                        self.emit(S::error_event(error.clone())).await;
                        if was_ready && opened.elapsed() >= STABLE_SESSION {
                            // A session that worked for a while starts a fresh backoff schedule
                            // (one the server ends right after its welcome keeps backing off).
                            delays = self.config.reconnect.delays();
                            attempt = 0;
                        }
                        last_error = error;
                    }
                }
            }
            attempt += 1;
            let Some(delay) = delays.next() else {
                tracing::warn!(attempt, %last_error, "giving up reconnecting");
                return self.shut(last_error).await;
            };
            self.status.send_replace(ConnectionState::Reconnecting {
                attempt,
                delay,
                error: last_error.clone(),
            });
            if self.wait(tokio::time::sleep(delay)).await.is_none() {
                return self.shut(Error::Shutdown).await;
            }
            self.status.send_replace(ConnectionState::Connecting { attempt });
            let url = match self.session.url() {
                Ok(url) => url,
                Err(error) => return self.shut(error).await,
            };
            let (credentials, format, timeout) =
                (self.config.credentials.clone(), self.config.format, self.config.connect_timeout);
            let open = async move {
                let token = credentials.token().await?;
                Connection::open(&url, token.as_deref(), format, timeout).await
            };
            match self.wait(open).await {
                None => return self.shut(Error::Shutdown).await,
                Some(Ok(open)) => connection = Some(open),
                Some(Err(error)) if !error.is_retryable() => return self.shut(error).await,
                Some(Err(error)) => {
                    tracing::debug!(%error, attempt, "reconnect attempt failed");
                    last_error = error;
                }
            }
        }
    }

    /// Runs `future` while still taking commands and expiring operations. `None` when the app
    /// closed the handle meanwhile.
    async fn wait<F: std::future::Future>(&mut self, future: F) -> Option<F::Output> {
        tokio::pin!(future);
        loop {
            let expiry = self.pending.next_deadline();
            tokio::select! {
                output = &mut future => return Some(output),
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => return None,
                    Some(Command::Op(op)) => {
                        self.accept(op).await;
                    }
                    Some(Command::Sticky(message)) => self.sticky = Some(message),
                },
                _ = sleep_until_some(expiry) => self.expire().await,
            }
        }
    }

    /// Serves one connection until it ends; also says whether the session became ready.
    async fn serve(&mut self, mut connection: Connection) -> (SessionEnd, bool) {
        let mut ready = false;
        if self.session.ready_on_open() {
            ready = true;
            if let Err(error) = self.on_ready(&mut connection).await {
                return (SessionEnd::Lost(error), ready);
            }
        }
        let interval = self.config.heartbeat_interval.max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + interval, interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_inbound = Instant::now();
        let end = loop {
            let silent_until = last_inbound + self.config.heartbeat_timeout;
            let expiry = self.pending.next_deadline();
            tokio::select! {
                inbound = connection.recv() => {
                    match inbound {
                        Ok(Inbound::Heartbeat) => {}
                        Ok(Inbound::Message(message)) => match self.handle(message).await {
                            Ok(true) if !ready => {
                                ready = true;
                                if let Err(error) = self.on_ready(&mut connection).await {
                                    break SessionEnd::Lost(error);
                                }
                            }
                            Ok(_) => {}
                            Err(error) => break SessionEnd::Lost(error),
                        },
                        Err(error) if error.is_retryable() => break SessionEnd::Lost(error),
                        Err(error) => break SessionEnd::Fatal(error),
                    }
                    // Counted after handling: time spent waiting for the app is not silence.
                    last_inbound = Instant::now();
                }
                command = self.commands.recv() => match command {
                    None | Some(Command::Close) => break SessionEnd::ClosedByApp,
                    Some(Command::Op(op)) => {
                        let outgoing = (op.op_id, op.message.clone());
                        if self.accept(op).await && ready {
                            if let Err(error) = self.send_op(&mut connection, outgoing).await {
                                break SessionEnd::Lost(error);
                            }
                        }
                    }
                    Some(Command::Sticky(message)) => {
                        self.sticky = Some(message.clone());
                        if ready {
                            if let Err(error) = connection.send(&message).await {
                                break SessionEnd::Lost(error);
                            }
                        }
                    }
                },
                _ = heartbeat.tick() => {
                    if let Err(error) = connection.send_heartbeat().await {
                        break SessionEnd::Lost(error);
                    }
                }
                _ = tokio::time::sleep_until(silent_until) => {
                    break SessionEnd::Lost(Error::HeartbeatTimeout(self.config.heartbeat_timeout));
                }
                _ = sleep_until_some(expiry) => self.expire().await,
                _ = sleep_until_some(self.resend_at) => {
                    self.resend_at = None;
                    if let Err(error) = self.resend(&mut connection).await {
                        break SessionEnd::Lost(error);
                    }
                }
            }
        };
        self.resend_at = None;
        connection.close().await;
        (end, ready)
    }

    /// The session is open: send the sticky message and every waiting operation, in issue order.
    async fn on_ready(&mut self, connection: &mut Connection) -> Result<(), Error> {
        self.status.send_replace(ConnectionState::Open);
        if let Some(sticky) = &self.sticky {
            connection.send(sticky).await?;
        }
        self.resend(connection).await
    }

    /// Sends every waiting operation again, in issue order, with its original `op_id`.
    async fn resend(&mut self, connection: &mut Connection) -> Result<(), Error> {
        let waiting = self.pending.messages();
        if !waiting.is_empty() {
            tracing::debug!(count = waiting.len(), "re-sending operations waiting for their ack");
        }
        for outgoing in waiting {
            self.send_op(connection, outgoing).await?;
        }
        Ok(())
    }

    async fn send_op(
        &mut self,
        connection: &mut Connection,
        (op_id, message): (Uuid, ClientMessage),
    ) -> Result<(), Error> {
        // Marked before the write: a write that fails half-way may still reach the room.
        self.pending.mark_sent(op_id);
        connection.send(&message).await
    }

    /// Takes an operation into the buffer; reports it at once when the buffer is full.
    async fn accept(&mut self, op: PendingOp) -> bool {
        if op.deadline <= Instant::now() {
            let error = op.expiry_error();
            self.resolve(op, Err(error)).await;
            return false;
        }
        match self.pending.push(op) {
            Ok(()) => true,
            Err(refused) => {
                let (op, error) = *refused;
                self.resolve(op, Err(error)).await;
                false
            }
        }
    }

    async fn handle(&mut self, message: ServerMessage) -> Result<bool, Error> {
        match message {
            ServerMessage::Ack(ack) => {
                match self.pending.take(ack.op_id) {
                    Some(op) => self.resolve(op, Ok(ack.seq)).await,
                    // An ack for an operation already reported (expired while its ack was in flight).
                    None => tracing::debug!(op_id = %ack.op_id, "ack for an operation no longer waiting"),
                }
                Ok(false)
            }
            ServerMessage::Error(frame) => {
                // Over the rate, an operation is not refused for good: it stays waiting (its TTL
                // still bounds it) and every waiting one is sent again a little later with its
                // op_id (the room applies each op_id once, so those that did pass are only
                // acknowledged again).
                let over_rate = frame.code == ErrorCode::RateLimited;
                if over_rate && self.pending.next_deadline().is_some() {
                    self.resend_at.get_or_insert(Instant::now() + RESEND_AFTER_REFUSAL);
                }
                match frame.op_id.filter(|_| !over_rate).and_then(|op_id| self.pending.take(op_id)) {
                    Some(op) => {
                        let error = refusal(op.op_id, frame);
                        self.resolve(op, Err(error)).await;
                    }
                    None => {
                        let error = Error::Server { code: frame.code, message: frame.message };
                        // The app gets it as an event; a log line per frame would flood stderr.
                        tracing::debug!(%error, "error frame from the server");
                        self.emit(S::error_event(error)).await;
                    }
                }
                Ok(false)
            }
            ServerMessage::Pong(_) => Ok(false),
            other => {
                let mut out = Vec::new();
                let outcome = self.session.on_message(other, &mut out);
                for event in out {
                    self.emit(event).await;
                }
                outcome
            }
        }
    }

    async fn expire(&mut self) {
        for op in self.pending.expire(Instant::now()) {
            let error = op.expiry_error();
            tracing::debug!(%error, "operation past its time to live");
            self.resolve(op, Err(error)).await;
        }
    }

    /// Hands an outcome to its operation; a failure nobody awaits goes to the event stream.
    async fn resolve(&mut self, op: PendingOp, outcome: Result<u64, OpError>) {
        if let Err(Err(error)) = op.reply.send(outcome) {
            self.emit(S::op_failed_event(error)).await;
        }
    }

    async fn emit(&mut self, event: S::Event) {
        // An app that dropped its stream no longer wants events; operations still work.
        let _ = self.events.send(event).await;
    }

    async fn shut(mut self, reason: Error) {
        // Nothing here waits for the app: it may have stopped reading.
        for op in self.pending.drain() {
            let error = OpError::Closed { op_id: op.op_id, reason: reason.to_string() };
            if let Err(Err(error)) = op.reply.send(Err(error)) {
                let _ = self.events.try_send(S::op_failed_event(error));
            }
        }
        if reason != Error::Shutdown {
            tracing::warn!(%reason, "closed");
            let _ = self.events.try_send(S::error_event(reason.clone()));
        }
        self.status.send_replace(ConnectionState::Closed { reason });
    }
}

/// How long the first session may take to open (its `welcome` may follow a long replay).
fn config_timeout(config: &LinkConfig) -> Duration {
    config.connect_timeout + config.heartbeat_timeout
}

/// The typed outcome of an `error` frame that names an operation.
fn refusal(op_id: Uuid, frame: ErrorFrame) -> OpError {
    match frame.code {
        ErrorCode::RateLimited => OpError::RateLimited { op_id, message: frame.message },
        code => OpError::Refused { op_id, code, message: frame.message },
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
