//! The command line, declared with `clap`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Client of edgeroom: tail and publish to rooms, read and change state, watch presence and
/// counters, mint tokens, administer rooms, and generate load.
#[derive(Debug, Parser)]
#[command(name = "edgeroom", version)]
pub struct Cli {
    /// Base URL of the service.
    #[arg(long, global = true, env = "EDGEROOM_URL", default_value = "http://127.0.0.1:8787")]
    pub url: String,
    /// Token for room and counter commands (a local dev server needs none).
    #[arg(long, global = true, env = "EDGEROOM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Speak JSON frames instead of binary ones.
    #[arg(long, global = true)]
    pub json_frames: bool,
    /// More logs on stderr (-v info, -vv debug); `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a room's events as they happen (Ctrl-C to stop).
    Tail {
        /// `tenant/room`
        room: String,
        /// One JSON object per line instead of readable lines.
        #[arg(long)]
        json: bool,
        /// Replay every event after this seq first.
        #[arg(long)]
        from: Option<u64>,
        /// The epoch `--from` counts in (from an earlier `welcome`); a stale one gets a gap.
        #[arg(long, requires = "from")]
        epoch: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Publish a JSON body (or, without BODY, each line of stdin) and print each event's seq.
    Publish {
        /// `tenant/room`
        room: String,
        /// The message, as JSON (`'"text"'`, `'{"a":1}'`); stdin lines when absent.
        body: Option<String>,
        /// Topic label.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Print a page of history, one event per line (JSON).
    History {
        /// `tenant/room`
        room: String,
        /// Events after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Read or change the room's shared state.
    State {
        /// What to do with it.
        #[command(subcommand)]
        action: StateAction,
    },
    /// Print the room's members (JSON lines); optionally set your own data and watch changes.
    Presence {
        /// `tenant/room`
        room: String,
        /// Your presence data (JSON) while connected.
        #[arg(long)]
        set: Option<String>,
        /// Keep printing presence changes until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Read, change or watch a counter.
    Counter {
        /// What to do with it.
        #[command(subcommand)]
        action: CounterAction,
    },
    /// Tokens.
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The admin API.
    Admin {
        /// Admin key.
        #[arg(long, env = "EDGEROOM_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// What to do.
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Generate load: subscribers, publishers, and the delivered rate and latency they see.
    Load(LoadArgs),
    /// The wire-level load generator of bench/ (edgeroom or the partyserver peer, JSON frames).
    Bench(crate::bench::BenchArgs),
}

/// `state …`
#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Print the whole state (a JSON object) or one key's value.
    Get {
        /// `tenant/room`
        room: String,
        /// The key.
        key: Option<String>,
    },
    /// Set a key to a JSON value; prints the change's seq.
    Set {
        /// `tenant/room`
        room: String,
        /// The key.
        key: String,
        /// The value, as JSON.
        value: String,
    },
    /// Delete a key; prints the change's seq.
    Delete {
        /// `tenant/room`
        room: String,
        /// The key.
        key: String,
    },
}

/// `counter …`
#[derive(Debug, Subcommand)]
pub enum CounterAction {
    /// Print the value.
    Get {
        /// `tenant/name`
        counter: String,
    },
    /// Add a (signed) delta; prints the value after it.
    Add {
        /// `tenant/name`
        counter: String,
        /// The delta.
        #[arg(allow_negative_numbers = true)]
        delta: i64,
    },
    /// Set the value (unsharded counters); prints it.
    Set {
        /// `tenant/name`
        counter: String,
        /// The value.
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Reset to zero.
    Reset {
        /// `tenant/name`
        counter: String,
    },
    /// Print every new value until Ctrl-C.
    Watch {
        /// `tenant/name`
        counter: String,
        /// Stop after this many values.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `token …`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Mint a token and print it: signed here with the tenant secret, or by the admin API.
    Mint {
        /// The tenant.
        tenant: String,
        /// The user id.
        #[arg(long)]
        sub: String,
        /// `ROOM=RIGHTS`, e.g. `lobby=read,write,presence` or `team-*=read` (repeatable).
        #[arg(long = "grant", required = true)]
        grants: Vec<String>,
        /// Lifetime.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Sign locally with this tenant secret.
        #[arg(long, env = "EDGEROOM_TENANT_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Ask the admin API (with this key) instead.
        #[arg(long, env = "EDGEROOM_ADMIN_KEY", hide_env_values = true, conflicts_with = "secret")]
        admin_key: Option<String>,
    },
}

/// `admin …`
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// The tenant's rooms (JSON lines).
    Rooms {
        /// The tenant.
        tenant: String,
    },
    /// A room's snapshots (JSON lines).
    Snapshots {
        /// `tenant/room`
        room: String,
    },
    /// Close one connection of the room (close code 4013).
    Kick {
        /// `tenant/room`
        room: String,
        /// The connection id (from `presence`).
        connection_id: u64,
    },
    /// Close every connection of the room (close code 4014).
    Close {
        /// `tenant/room`
        room: String,
    },
    /// Flush the room now: snapshot to R2, index to D1, read model to KV.
    Flush {
        /// `tenant/room`
        room: String,
    },
    /// Restore a snapshot (the latest without `--seq`).
    Restore {
        /// `tenant/room`
        room: String,
        /// The snapshot's seq.
        #[arg(long)]
        seq: Option<u64>,
    },
}

/// `load …`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// `tenant/room` (use a fresh room per run).
    pub room: String,
    /// Subscriber connections.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Publisher connections.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Open loop: messages per second over all publishers, sent on schedule (a backlog shows as
    /// latency). Without it, each publisher keeps `--window` messages in flight (closed loop).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Closed loop: messages in flight per publisher.
    #[arg(long, default_value_t = 10, conflicts_with = "rate")]
    pub window: usize,
    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Padding bytes per message.
    #[arg(long, default_value_t = 0)]
    pub size: usize,
    /// How long to wait for the last deliveries after publishing stops.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub drain: Duration,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the result as JSON to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}
