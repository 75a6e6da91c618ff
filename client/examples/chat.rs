//! A terminal chat: every line you type is published to the room, every message in the room is
//! printed, across reconnects and without duplicates.
//!
//! ```sh
//! cargo run -p edgeroom-client --example chat -- acme lobby ada
//! ```
//! (`EDGEROOM_URL` and `EDGEROOM_TOKEN` are read like the CLI does.)

use edgeroom_client::{ConnectionState, Room, RoomEvent, RoomOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [tenant, room, name] = args.as_slice() else {
        return Err("usage: chat <tenant> <room> <your name>".into());
    };
    let url = std::env::var("EDGEROOM_URL").unwrap_or_else(|_| "http://127.0.0.1:8787".into());
    let mut options = RoomOptions::new(url, tenant, room);
    options.token = std::env::var("EDGEROOM_TOKEN").ok();
    let (chat, mut events) = Room::connect(options).await?;
    chat.set_presence(&json!({ "name": name }))?;
    println!(
        "joined {tenant}/{room} with {} others; type to talk, Ctrl-D to leave",
        chat.members().len() - 1
    );

    let mut status = chat.watch_connection();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    // Not awaited here: the ack (or the reason it failed) arrives in the background.
                    let sent = chat.publish(&json!({ "from": name, "text": text }));
                    tokio::spawn(async move {
                        if let Err(error) = sent.await {
                            eprintln!("!! not delivered: {error}");
                        }
                    });
                }
                Some(_) => {}
                None => break,
            },
            Some(event) = events.recv() => match event {
                RoomEvent::Event(event) => {
                    let body: Value = event.body.parse().unwrap_or_default();
                    println!("{}: {}", body["from"].as_str().unwrap_or("?"), body["text"].as_str().unwrap_or(""));
                }
                RoomEvent::Gap(gap) => println!("-- missed messages {}..={}", gap.resume_from + 1, gap.seq),
                RoomEvent::OpFailed(error) => eprintln!("!! {error}"),
                _ => {}
            },
            Ok(()) = status.changed() => match &*status.borrow() {
                ConnectionState::Reconnecting { delay, .. } => eprintln!("-- connection lost; retrying in {delay:?}"),
                ConnectionState::Open => eprintln!("-- connected"),
                _ => {}
            },
        }
    }
    chat.close().await;
    Ok(())
}
