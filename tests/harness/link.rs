//! A WebSocket relay between a client and the server that a test can break on purpose: freeze
//! the current links (a silent, dead link), cut them (an abrupt drop), refuse new ones (an
//! outage), or inject a frame towards the client (a malformed server frame). The server behind it
//! is the real `wrangler dev`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// Switches of one relayed connection.
struct LinkSwitch {
    frozen: AtomicBool,
    cut: Notify,
    inject: mpsc::UnboundedSender<Message>,
}

#[derive(Default)]
struct Shared {
    links: Mutex<Vec<Arc<LinkSwitch>>>,
    refuse: AtomicBool,
    opened: AtomicUsize,
}

/// A running relay on a free loopback port.
pub struct Link {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Relays `ws://127.0.0.1:<port>/…` to the same path and query on `upstream`
    /// (`127.0.0.1:<server port>`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if accepting.refuse.load(Ordering::SeqCst) {
                    drop(stream);
                    continue;
                }
                tokio::spawn(relay(stream, upstream.clone(), accepting.clone()));
            }
        });
        Self { port, shared, task }
    }

    /// `http://127.0.0.1:<relay port>`: the base URL clients use to go through the relay.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops forwarding anything on the current links, both ways (new links work normally).
    pub fn freeze_current(&self) {
        for link in self.live() {
            link.frozen.store(true, Ordering::SeqCst);
        }
    }

    /// Drops the current links without a close frame.
    pub fn cut_current(&self) {
        for link in self.live() {
            link.cut.notify_one();
        }
    }

    /// Refuses (or accepts again) new connections.
    pub fn refuse_new(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Sends `frame` to the client of every current link, as if the server had sent it.
    pub fn inject(&self, frame: Message) {
        for link in self.live() {
            let _ = link.inject.send(frame.clone());
        }
    }

    /// How many connections were relayed so far.
    pub fn opened(&self) -> usize {
        self.shared.opened.load(Ordering::SeqCst)
    }

    fn live(&self) -> Vec<Arc<LinkSwitch>> {
        let mut links = self.shared.links.lock().expect("relay lock");
        links.retain(|link| !link.inject.is_closed());
        links.clone()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
        for link in self.live() {
            link.cut.notify_one();
        }
    }
}

async fn relay(stream: TcpStream, upstream: String, shared: Arc<Shared>) {
    let mut target = String::new();
    // The callback's error type is tungstenite's, large by design.
    #[allow(clippy::result_large_err)]
    let capture = |request: &Request, response: Response| {
        target = request.uri().to_string();
        Ok(response)
    };
    let Ok(mut client) = tokio_tungstenite::accept_hdr_async(stream, capture).await else { return };
    let Ok((mut server, _)) = tokio_tungstenite::connect_async(format!("ws://{upstream}{target}")).await
    else {
        let _ = client.close(None).await;
        return;
    };
    let (inject, mut injected) = mpsc::unbounded_channel();
    let switch = Arc::new(LinkSwitch { frozen: AtomicBool::new(false), cut: Notify::new(), inject });
    shared.links.lock().expect("relay lock").push(switch.clone());
    shared.opened.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            from_client = client.next() => match from_client {
                Some(Ok(message)) if !switch.frozen.load(Ordering::SeqCst) => {
                    if server.send(message).await.is_err() { return; }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            from_server = server.next() => match from_server {
                Some(Ok(message)) if !switch.frozen.load(Ordering::SeqCst) => {
                    if client.send(message).await.is_err() { return; }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
            Some(frame) = injected.recv() => {
                if client.send(frame).await.is_err() { return; }
            }
            _ = switch.cut.notified() => return,
        }
    }
}
