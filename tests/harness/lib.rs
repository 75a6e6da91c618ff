//! Test harness: runs a real `wrangler dev` (workerd with local Durable Objects, D1, KV and R2)
//! on a free loopback port with its own state folder, and talks to it over real HTTP and
//! WebSockets.
//!
//! A [`Server`] owns the whole wrangler process group and kills it when dropped, also when the
//! test panics.

use std::collections::VecDeque;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edgeroom_protocol::{ClientMessage, Event, PresenceDiff, ServerMessage, Welcome, WireFrame};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod link;
pub mod webhook;

/// How long a frame may take to arrive before a test fails.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `wrangler dev` may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The repository root (where `wrangler.toml` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What a [`Server`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The one Worker of `wrangler.toml` (with the test-only fault injection).
    Single,
    /// The three Workers of the split deploy (`deploy/*.toml`), built exactly as deployed.
    Split,
}

impl Shape {
    /// The `wrangler dev` config arguments (the first config's Worker serves HTTP).
    fn config_args(self) -> &'static [&'static str] {
        match self {
            Self::Single => &[],
            Self::Split => {
                &["-c", "deploy/router.toml", "-c", "deploy/rooms.toml", "-c", "deploy/counters.toml"]
            }
        }
    }
}

/// Builds the Worker(s) of `shape` once per test process, unless the caller already did
/// (`EDGEROOM_PREBUILT=1`, as `scripts/test.sh` sets after its own builds).
fn ensure_built(shape: Shape) {
    static SINGLE: OnceLock<()> = OnceLock::new();
    static SPLIT: OnceLock<()> = OnceLock::new();
    let (built, args, faults) = match shape {
        Shape::Single => (&SINGLE, None, "1"),
        Shape::Split => (&SPLIT, Some("split"), "0"),
    };
    built.get_or_init(|| {
        if std::env::var("EDGEROOM_PREBUILT").as_deref() == Ok("1") {
            return;
        }
        let status = Command::new("sh")
            .arg(repo_root().join("scripts/build-worker.sh"))
            .args(args)
            .env("EDGEROOM_FAULT_INJECTION", faults)
            .current_dir(repo_root())
            .status()
            .expect("run scripts/build-worker.sh");
        assert!(status.success(), "building the worker failed: {status}");
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

fn wrangler() -> Command {
    let mut command = Command::new(repo_root().join("node_modules/.bin/wrangler"));
    command
        .current_dir(repo_root())
        .env("WRANGLER_SEND_METRICS", "false")
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .env("EDGEROOM_SKIP_BUILD", "1")
        .stdin(Stdio::null());
    command
}

/// A state folder that can outlive one server (to test restarts on the same state).
#[derive(Clone)]
pub struct StateDir(Arc<tempfile::TempDir>);

impl StateDir {
    /// A new, empty state folder with the D1 migrations applied.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("edgeroom-test-").tempdir().expect("temp dir");
        let apply = || {
            wrangler()
                .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
                .arg(dir.path())
                .output()
                .expect("run wrangler d1 migrations apply")
        };
        // Under heavy load wrangler's local proxy sometimes refuses the first connection.
        let mut output = apply();
        for _ in 0..2 {
            if output.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_secs(2));
            output = apply();
        }
        assert!(
            output.status.success(),
            "applying D1 migrations failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Self(Arc::new(dir))
    }

    /// Where the state lives.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes `bytes` as the R2 object `key` of the snapshots bucket (to corrupt a snapshot).
    /// Only while no server runs on this state.
    pub fn put_snapshot_object(&self, key: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write temp file");
        let output = wrangler()
            .args(["r2", "object", "put", &format!("edgeroom-snapshots/{key}"), "--local", "--file"])
            .arg(file.path())
            .arg("--persist-to")
            .arg(self.path())
            .output()
            .expect("run wrangler r2 object put");
        assert!(output.status.success(), "r2 put failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Whether the snapshots bucket holds `key`. Only while no server runs on this state.
    pub fn has_snapshot_object(&self, key: &str) -> bool {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let output = wrangler()
            .args(["r2", "object", "get", &format!("edgeroom-snapshots/{key}"), "--local", "--file"])
            .arg(file.path())
            .arg("--persist-to")
            .arg(self.path())
            .output()
            .expect("run wrangler r2 object get");
        output.status.success() && std::fs::metadata(file.path()).is_ok_and(|m| m.len() > 0)
    }

    /// Deletes the SQLite storage of every room object (as if the objects were lost), keeping
    /// D1, KV and R2. Only while no server runs on this state.
    pub fn wipe_room_objects(&self) -> usize {
        let dir = self.path().join("v3/do/edgeroom-RoomObject");
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}

/// Why `wrangler dev` did not come up.
enum Startup {
    /// Its port was bound by someone else first.
    PortTaken,
    /// It exited for another reason.
    Exited(std::process::ExitStatus),
    /// It did not answer within [`READY_TIMEOUT`].
    TimedOut,
}

/// A running `wrangler dev`.
pub struct Server {
    child: Child,
    port: u16,
    state: StateDir,
    log: PathBuf,
    vars: Vec<(String, String)>,
    shape: Shape,
}

impl Server {
    /// Starts a server on fresh state.
    pub async fn start() -> Self {
        Self::start_on(StateDir::new()).await
    }

    /// Starts the split deploy's three Workers (`deploy/*.toml`, docs/deploy.md) in one
    /// `wrangler dev` on fresh state. Vars (`--var`) reach only the router there, so this takes
    /// those of the router: `AUTH_MODE`, `ADMIN_KEY`, ...
    pub async fn start_split(router_vars: &[(&str, &str)]) -> Self {
        Self::launch(StateDir::new(), router_vars, Shape::Split).await
    }

    /// Starts a server on fresh state with wrangler vars overridden (`--var NAME:VALUE`).
    pub async fn start_with_vars(vars: &[(&str, &str)]) -> Self {
        Self::launch(StateDir::new(), vars, Shape::Single).await
    }

    /// Starts a server on the given state folder.
    pub async fn start_on(state: StateDir) -> Self {
        Self::launch(state, &[], Shape::Single).await
    }

    /// Starts a server on the given state folder with wrangler vars overridden.
    pub async fn start_on_with_vars(state: StateDir, vars: &[(&str, &str)]) -> Self {
        Self::launch(state, vars, Shape::Single).await
    }

    async fn launch(state: StateDir, vars: &[(&str, &str)], shape: Shape) -> Self {
        Self::launch_on(
            None,
            state,
            vars.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            shape,
        )
        .await
    }

    /// Kills the whole runtime with SIGKILL (no graceful shutdown, as in a crash) and starts it
    /// again on the same port and state, so clients can reconnect to the same URL.
    pub async fn kill_and_restart(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        let (state, vars) = (self.state.clone(), std::mem::take(&mut self.vars));
        *self = Self::launch_on(Some(self.port), state, vars, self.shape).await;
    }

    /// Starts wrangler on `port` (a free one when `None`) and waits until it answers. A port
    /// can be taken between choosing it and wrangler binding it (another test's server, or
    /// wrangler's own reload after its startup rebuild racing the first bind): then this tries
    /// again, on a new port when the caller did not fix one.
    async fn launch_on(
        port: Option<u16>,
        state: StateDir,
        vars: Vec<(String, String)>,
        shape: Shape,
    ) -> Self {
        const ATTEMPTS: usize = 4;
        for attempt in 1..=ATTEMPTS {
            let mut server = Self::spawn(port.unwrap_or_else(free_port), state.clone(), vars.clone(), shape);
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(Startup::PortTaken) if attempt < ATTEMPTS => {
                    // The dropped server's process group is killed; give the port a moment.
                    drop(server);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(Startup::PortTaken) => {
                    panic!("wrangler dev found its port taken {ATTEMPTS} times:\n{}", server.log_tail())
                }
                Err(Startup::Exited(status)) => {
                    panic!("wrangler dev exited early ({status}):\n{}", server.log_tail())
                }
                Err(Startup::TimedOut) => panic!("wrangler dev not ready:\n{}", server.log_tail()),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(port: u16, state: StateDir, vars: Vec<(String, String)>, shape: Shape) -> Self {
        ensure_built(shape);
        let log = state.path().join(format!("wrangler-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("create wrangler log");
        let mut command = wrangler();
        command
            .arg("dev")
            .args(shape.config_args())
            // A dev registry of its own: Workers of the same names in other servers (the split
            // deploy's) must not be reached from this one.
            .env("WRANGLER_REGISTRY_PATH", state.path().join("registry"))
            .args(["--local", "--test-scheduled", "--ip", "127.0.0.1", "--inspector-port", "0", "--port"])
            .arg(port.to_string())
            .arg("--persist-to")
            .arg(state.path())
            // Anonymous local access, unless the test chose an auth mode.
            .args(
                (!vars.iter().any(|(name, _)| *name == "AUTH_MODE"))
                    .then(|| ["--var".to_owned(), "AUTH_MODE:dev".to_owned()])
                    .into_iter()
                    .flatten(),
            )
            .args(vars.iter().flat_map(|(name, value)| ["--var".to_owned(), format!("{name}:{value}")]))
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file);
        // Own process group, so stopping it also stops workerd and every other child.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().expect("spawn wrangler dev");
        Self { child, port, state, log, vars, shape }
    }

    async fn wait_ready(&mut self) -> Result<(), Startup> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let client = reqwest::Client::new();
        loop {
            if let Ok(response) = client.get(self.http_url("/healthz")).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(if self.log().contains("Address already in use") {
                    Startup::PortTaken
                } else {
                    Startup::Exited(status)
                });
            }
            if Instant::now() >= deadline {
                return Err(Startup::TimedOut);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines wrangler printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Everything wrangler printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The state folder this server persists to.
    pub fn state(&self) -> StateDir {
        self.state.clone()
    }

    /// `http://127.0.0.1:<port><path>`
    /// `POST path` with a JSON body and the admin key as a bearer token.
    pub async fn admin_post(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        let request = reqwest::Client::new().post(self.http_url(path)).bearer_auth(key).json(&body);
        request.send().await.expect("admin POST")
    }

    /// The seqs of a room's first history page (up to 1,000 events) read over REST in dev auth.
    pub async fn history_seqs(&self, tenant: &str, room: &str) -> Vec<u64> {
        let url = self.http_url(&format!("/v1/t/{tenant}/rooms/{room}/history?limit=1000"));
        let page: Value = reqwest::get(url).await.expect("history GET").json().await.expect("history JSON");
        page["events"]
            .as_array()
            .expect("a history page")
            .iter()
            .map(|e| e["seq"].as_u64().expect("an event seq"))
            .collect()
    }

    /// `GET path` with the admin key as a bearer token.
    pub async fn admin_get(&self, key: &str, path: &str) -> reqwest::Response {
        reqwest::Client::new().get(self.http_url(path)).bearer_auth(key).send().await.expect("admin GET")
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `ws://127.0.0.1:<port><path>`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the server and waits until its processes are gone.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) on our own child's process group; no memory is involved.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; workerd children may outlive node's exit, so kill the group anyway.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client speaking raw frames, for tests.
pub struct Client {
    stream: Stream,
    /// Decoded messages not yet returned, with `events` batches split into single events.
    queue: VecDeque<ServerMessage>,
}

impl Client {
    /// Connects to `url`; panics with the HTTP answer if the upgrade is refused.
    pub async fn connect(url: &str) -> Self {
        let (stream, _) =
            tokio_tungstenite::connect_async(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
        Self { stream, queue: VecDeque::new() }
    }

    /// Tries to connect; returns the HTTP status of a refused upgrade.
    pub async fn try_connect(url: &str) -> Result<Self, u16> {
        match tokio_tungstenite::connect_async(url).await {
            Ok((stream, _)) => Ok(Self { stream, queue: VecDeque::new() }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(other) => panic!("connect {url}: {other}"),
        }
    }

    /// The next message, decoded from either form, with batches split into single events.
    pub async fn next_message(&mut self) -> ServerMessage {
        loop {
            if let Some(message) = self.queue.pop_front() {
                return message;
            }
            match self.recv_message().await {
                ServerMessage::Events(batch) => {
                    self.queue.extend(batch.events.into_iter().map(ServerMessage::Event))
                }
                other => return other,
            }
        }
    }

    /// The next event, skipping `welcome`, `presence`, `ack` and `pong` frames; panics on anything
    /// else.
    pub async fn next_event(&mut self) -> Event {
        loop {
            match self.next_message().await {
                ServerMessage::Event(event) => return event,
                ServerMessage::Welcome(_)
                | ServerMessage::Presence(_)
                | ServerMessage::Pong(_)
                | ServerMessage::Ack(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next message that is not a `presence` frame or an `event`.
    pub async fn next_control(&mut self) -> ServerMessage {
        loop {
            match self.next_message().await {
                ServerMessage::Presence(_) | ServerMessage::Event(_) => continue,
                other => return other,
            }
        }
    }

    /// The next `presence` frame, skipping events and pongs.
    pub async fn next_presence(&mut self) -> PresenceDiff {
        loop {
            match self.next_message().await {
                ServerMessage::Presence(diff) => return diff,
                ServerMessage::Event(_) | ServerMessage::Pong(_) => continue,
                other => panic!("expected presence, got {other:?}"),
            }
        }
    }

    /// The `welcome` that starts every session.
    pub async fn welcome(&mut self) -> Welcome {
        match self.next_message().await {
            ServerMessage::Welcome(welcome) => welcome,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// Whether the server sends nothing for `wait`.
    pub async fn is_quiet_for(&mut self, wait: Duration) -> bool {
        self.queue.is_empty() && tokio::time::timeout(wait, self.stream.next()).await.is_err()
    }

    /// Sends a JSON text frame.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.expect("send text frame");
    }

    /// Sends a raw binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream.send(Message::binary(bytes)).await.expect("send binary frame");
    }

    /// Sends a message in its binary form.
    pub async fn send_message_binary(&mut self, message: &ClientMessage) {
        self.send_binary(message.to_binary()).await;
    }

    /// The next data frame (text or binary), skipping pings and pongs.
    pub async fn recv_frame(&mut self) -> WireFrame {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.stream.next()).await;
            match next.expect("timed out waiting for a frame") {
                // The runtime's answer to a heartbeat `ping` text.
                Some(Ok(Message::Text(text))) if text.as_str() == "pong" => continue,
                Some(Ok(Message::Text(text))) => return WireFrame::Text(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => return WireFrame::Binary(bytes.to_vec()),
                Some(Ok(Message::Close(frame))) => panic!("socket closed: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("socket error: {e}"),
                None => panic!("socket ended"),
            }
        }
    }

    /// The next frame, parsed as JSON (panics on a binary frame).
    pub async fn recv_json(&mut self) -> Value {
        match self.recv_frame().await {
            WireFrame::Text(text) => serde_json::from_str(&text).expect("server sent invalid JSON"),
            WireFrame::Binary(bytes) => {
                panic!("expected a text frame, got {} binary bytes", bytes.len())
            }
        }
    }

    /// The next frame, decoded as a server message (either form).
    pub async fn recv_message(&mut self) -> ServerMessage {
        let frame = self.recv_frame().await;
        ServerMessage::decode(&frame).unwrap_or_else(|e| panic!("undecodable frame {frame:?}: {e}"))
    }

    /// The next frame, or the close code (`Err`) when the server closes the socket instead.
    pub async fn recv_frame_or_close(&mut self) -> Result<WireFrame, Option<u16>> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.stream.next()).await;
            match next.expect("timed out waiting for a frame or a close") {
                Some(Ok(Message::Text(text))) if text.as_str() == "pong" => continue,
                Some(Ok(Message::Text(text))) => return Ok(WireFrame::Text(text.to_string())),
                Some(Ok(Message::Binary(bytes))) => return Ok(WireFrame::Binary(bytes.to_vec())),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| f.code.into())),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn recv_close(&mut self) -> Option<u16> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.stream.next()).await;
            match next.expect("timed out waiting for close") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Publishes `n` messages (bodies 0, 1, …), each waiting for its event; returns the last seq.
    pub async fn publish_n(&mut self, n: usize) -> u64 {
        let mut last = 0;
        for i in 0..n {
            self.send_json(serde_json::json!({"type": "publish", "body": i})).await;
            last = self.next_event().await.seq;
        }
        last
    }

    /// Closes the socket politely.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry of [`Server::launch_on`]: a server whose fixed port is held by someone else
    /// when it starts (as after a restart, or when another server took it) still comes up on it
    /// once the port is free.
    #[tokio::test]
    async fn a_server_comes_up_on_a_port_that_was_held_when_it_started() {
        let holder = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = holder.local_addr().expect("address").port();
        let state = StateDir::new();
        let log = state.path().join(format!("wrangler-{port}.log"));
        // Hold the port until the first attempt has found it taken.
        let release = std::thread::spawn(move || {
            let deadline = Instant::now() + READY_TIMEOUT;
            while Instant::now() < deadline {
                if std::fs::read_to_string(&log).is_ok_and(|text| text.contains("Address already in use")) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(holder);
            false
        });
        let server = Server::launch_on(Some(port), state, Vec::new(), Shape::Single).await;
        assert!(release.join().expect("holder thread"), "the first attempt did not find the port taken");
        let response = reqwest::get(server.http_url("/healthz")).await.expect("healthz");
        assert!(response.status().is_success());
    }
}
