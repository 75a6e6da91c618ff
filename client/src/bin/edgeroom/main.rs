//! `edgeroom`: the command-line client of edgeroom. Exit codes: 0 success, 1 failure, 2 bad usage
//! or input, 3 authentication (see `client/README.md`).

mod admin;
mod args;
mod bench;
mod counters;
mod failure;
mod latency;
mod load;
mod rooms;

use std::process::ExitCode;

use clap::Parser;
use edgeroom_client::{Format, RoomOptions};
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&Failure::failed(format!("cannot start the runtime: {error}"))),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // stdout was closed (for example by `| head`): nothing went wrong.
        Err(failure) if failure.code == 0 => ExitCode::SUCCESS,
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    eprintln!("edgeroom: error: {failure}");
    ExitCode::from(failure.code)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let link = Link { url: cli.url, token: cli.token, json_frames: cli.json_frames };
    match cli.command {
        Command::Tail { room, json, from, epoch, count } => {
            rooms::tail(&link, &room, json, from, epoch, count).await
        }
        Command::Publish { room, body, topic } => rooms::publish(&link, &room, body, topic).await,
        Command::History { room, after, limit } => rooms::history(&link, &room, after, limit).await,
        Command::State { action } => rooms::state(&link, action).await,
        Command::Presence { room, set, watch } => rooms::presence(&link, &room, set, watch).await,
        Command::Counter { action } => counters::run(&link, action).await,
        Command::Token { action } => admin::token(&link, action).await,
        Command::Admin { admin_key, action } => admin::admin(&link, admin_key, action).await,
        Command::Load(args) => load::run(&link, args).await,
        Command::Bench(args) => bench::run(&link, args).await,
    }
}

/// Where the service is and how to talk to it.
pub struct Link {
    pub url: String,
    pub token: Option<String>,
    pub json_frames: bool,
}

impl Link {
    /// Options for a room connection.
    pub fn room(&self, tenant: &str, room: &str) -> RoomOptions {
        let mut options = RoomOptions::new(&self.url, tenant, room).with_format(if self.json_frames {
            Format::Json
        } else {
            Format::Binary
        });
        options.token = self.token.clone();
        options
    }

    /// A REST client.
    pub fn rest(&self) -> Result<edgeroom_client::RestClient, Failure> {
        Ok(edgeroom_client::RestClient::new(&self.url)?.with_token(self.token.clone()))
    }
}

/// Prints a line to stdout; a closed stdout (`| head`) ends the command quietly.
pub fn out(line: impl std::fmt::Display) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|_| Failure { code: 0, message: String::new() })
}
