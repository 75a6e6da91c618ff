//! One WebSocket to the service: open it (with the token), send messages and heartbeats, and
//! receive decoded messages. Reconnecting is [`crate::driver`]'s job.

use std::time::Duration;

use edgeroom_protocol::{ClientMessage, Format, HttpError, ServerMessage, WireFrame};
use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Error;

/// The heartbeat text frame; the runtime answers [`HEARTBEAT_ANSWER`] without waking the room.
const HEARTBEAT: &str = "ping";
/// The runtime's answer to [`HEARTBEAT`].
const HEARTBEAT_ANSWER: &str = "pong";

/// What arrived on the socket.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A decoded message.
    Message(ServerMessage),
    /// The runtime answered a heartbeat (or a WebSocket-level ping/pong arrived).
    Heartbeat,
}

/// An open WebSocket.
pub(crate) struct Connection {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    format: Format,
}

impl Connection {
    /// Opens a WebSocket to `url`, sending `token` as `Authorization: Bearer`.
    pub(crate) async fn open(
        url: &Url,
        token: Option<&str>,
        format: Format,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::InvalidOptions(format!("bad WebSocket URL {url}: {e}")))?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::InvalidOptions("the token contains characters a header cannot carry".into())
            })?;
            request.headers_mut().insert("Authorization", value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let (stream, _) = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Err(upgrade_error(error)),
            Err(_) => {
                return Err(Error::Network(format!("no answer from {} within {timeout:?}", redacted(url))))
            }
        };
        Ok(Self { stream, format })
    }

    /// Sends a message in this connection's form.
    pub(crate) async fn send(&mut self, message: &ClientMessage) -> Result<(), Error> {
        let frame = match message.encode(self.format) {
            WireFrame::Text(text) => Message::text(text),
            WireFrame::Binary(bytes) => Message::binary(bytes),
        };
        self.stream.send(frame).await.map_err(link_error)
    }

    /// Sends the heartbeat text frame.
    pub(crate) async fn send_heartbeat(&mut self) -> Result<(), Error> {
        self.stream.send(Message::text(HEARTBEAT)).await.map_err(link_error)
    }

    /// The next message. A frame that does not decode is [`Error::MalformedFrame`]; the end of the
    /// socket is [`Error::Closed`].
    pub(crate) async fn recv(&mut self) -> Result<Inbound, Error> {
        let message = match self.stream.next().await {
            Some(Ok(message)) => message,
            Some(Err(error)) => return Err(link_error(error)),
            None => return Err(Error::Closed { code: 1006, reason: "the socket ended".into() }),
        };
        let frame = match message {
            Message::Text(text) if text.as_str() == HEARTBEAT_ANSWER => return Ok(Inbound::Heartbeat),
            Message::Text(text) => WireFrame::Text(text.as_str().to_owned()),
            Message::Binary(bytes) => WireFrame::Binary(bytes.to_vec()),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(Inbound::Heartbeat),
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.as_str().to_owned()))
                    .unwrap_or((u16::from(CloseCode::Status), String::new()));
                return Err(Error::Closed { code, reason });
            }
        };
        ServerMessage::decode(&frame).map(Inbound::Message).map_err(|e| {
            Error::MalformedFrame(format!("{e} (a {}-byte {} frame)", frame.len(), frame.format().as_str()))
        })
    }

    /// Closes politely (errors are irrelevant: the socket is being abandoned).
    pub(crate) async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.close(None)).await;
    }
}

/// The URL without its query (which may hold a token).
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

fn link_error(error: tungstenite::Error) -> Error {
    match error {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Error::Closed { code: 1006, reason: "the socket is closed".into() }
        }
        other => Error::Network(other.to_string()),
    }
}

/// A refused upgrade carries the service's JSON error body.
fn upgrade_error(error: tungstenite::Error) -> Error {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            http_error(status, body)
        }
        tungstenite::Error::Url(e) => Error::InvalidOptions(e.to_string()),
        other => Error::Network(other.to_string()),
    }
}

/// The [`Error::Http`] for a status and a body that should be `{"error":{"code","message"}}`.
pub(crate) fn http_error(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<HttpError>(body) {
        Ok(parsed) => Error::Http { status, code: Some(parsed.error.code), message: parsed.error.message },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let message = if text.trim().is_empty() {
                "no error body".to_owned()
            } else {
                text.chars().take(300).collect()
            };
            Error::Http { status, code: None, message }
        }
    }
}
