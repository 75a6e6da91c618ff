//! Room commands: `tail`, `publish`, `history`, `state`, `presence`.

use std::collections::VecDeque;

use edgeroom_client::{Event, EventKind, Position, Room, RoomEvent};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::args::StateAction;
use crate::failure::{address, json_arg, Failure};
use crate::{out, Link};

pub async fn tail(
    link: &Link,
    room: &str,
    json: bool,
    from: Option<u64>,
    epoch: Option<String>,
    count: Option<u64>,
) -> Result<(), Failure> {
    let (tenant, name) = address("room", room)?;
    let mut options = link.room(&tenant, &name);
    options.resume = from.map(|seq| Position { epoch, seq });
    let (room, mut events) = Room::connect(options).await?;
    let mut printed = 0;
    loop {
        let next = tokio::select! {
            next = events.recv() => next,
            _ = tokio::signal::ctrl_c() => break,
        };
        match next {
            Some(RoomEvent::Event(event)) => {
                out(if json { event_json(&event) } else { event_line(&event) })?;
                printed += 1;
                if count.is_some_and(|count| printed >= count) {
                    break;
                }
            }
            Some(RoomEvent::Gap(gap)) => {
                let state: serde_json::Map<String, Value> =
                    gap.state.iter().map(|(k, v)| (k.clone(), v.parse().unwrap_or(Value::Null))).collect();
                if json {
                    out(
                        json!({"type": "gap", "resume_from": gap.resume_from, "seq": gap.seq, "epoch": gap.epoch, "state": state}),
                    )?;
                } else {
                    out(format!(
                        "-- gap: events {}..={} are gone (epoch {}); state now: {}",
                        gap.resume_from + 1,
                        gap.seq,
                        gap.epoch,
                        Value::Object(state)
                    ))?;
                }
            }
            Some(RoomEvent::Connected(connected)) => {
                tracing::info!(epoch = %connected.epoch, seq = connected.seq, resumed = connected.resumed, "connected");
            }
            Some(RoomEvent::Error(error)) => tracing::warn!("{error}"),
            Some(RoomEvent::OpFailed(error)) => tracing::warn!("{error}"),
            Some(RoomEvent::Presence(_)) => {}
            None => {
                return match room.connection_state() {
                    edgeroom_client::ConnectionState::Closed { reason } => Err(reason.into()),
                    _ => Ok(()),
                }
            }
        }
    }
    room.close().await;
    Ok(())
}

fn event_json(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

fn event_line(event: &Event) -> String {
    let sender = event.sender.map(|s| format!("connection {s}")).unwrap_or_else(|| "server".to_owned());
    let topic = event.topic.as_deref().map(|t| format!(" [{t}]")).unwrap_or_default();
    let key = event.key.as_deref().unwrap_or_default();
    match event.kind {
        EventKind::Message => format!("#{} {sender}{topic}: {}", event.seq, event.body.as_str()),
        EventKind::StateSet => format!("#{} {sender} set {key} = {}", event.seq, event.body.as_str()),
        EventKind::StateDelete => format!("#{} {sender} deleted {key}", event.seq),
    }
}

/// Messages from stdin in flight at once.
const PUBLISH_WINDOW: usize = 256;

pub async fn publish(
    link: &Link,
    room: &str,
    body: Option<String>,
    topic: Option<String>,
) -> Result<(), Failure> {
    let (tenant, name) = address("room", room)?;
    if let Some(body) = body {
        let value = json_arg("the body", &body)?;
        let (room, _events) = Room::connect(link.room(&tenant, &name)).await?;
        let seq = room.publish_to(topic, &value).await?;
        room.close().await;
        return out(seq);
    }
    // Each stdin line is one message; all are checked as JSON before the first is sent, so a bad
    // line publishes nothing.
    let mut bodies = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut number = 0;
    while let Some(line) =
        lines.next_line().await.map_err(|e| Failure::failed(format!("reading stdin: {e}")))?
    {
        number += 1;
        if line.trim().is_empty() {
            continue;
        }
        bodies.push(json_arg(&format!("line {number} of stdin"), &line)?);
    }
    let (room, _events) = Room::connect(link.room(&tenant, &name)).await?;
    let progress = ProgressBar::new(bodies.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} acknowledged")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // A window of operations in flight keeps the client's buffer (1,000 operations) from filling
    // up; seqs print in input order.
    let mut in_flight = VecDeque::new();
    let mut failures = 0;
    let mut next = bodies.iter();
    loop {
        while in_flight.len() < PUBLISH_WINDOW {
            let Some(body) = next.next() else { break };
            in_flight.push_back(room.publish_to(topic.clone(), body));
        }
        let Some(operation) = in_flight.pop_front() else { break };
        match operation.await {
            Ok(seq) => out(seq)?,
            Err(error) => {
                failures += 1;
                progress.suspend(|| eprintln!("edgeroom: {error}"));
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    room.close().await;
    match failures {
        0 => Ok(()),
        n => Err(Failure::failed(format!("{n} of {} messages were not acknowledged", bodies.len()))),
    }
}

pub async fn history(link: &Link, room: &str, after: u64, limit: u32) -> Result<(), Failure> {
    let (tenant, name) = address("room", room)?;
    let page = link.rest()?.history(&tenant, &name, after, limit).await?;
    for event in &page.events {
        out(event_json(event))?;
    }
    Ok(())
}

pub async fn state(link: &Link, action: StateAction) -> Result<(), Failure> {
    match action {
        StateAction::Get { room, key } => {
            let (tenant, name) = address("room", &room)?;
            let view = link.rest()?.room(&tenant, &name, true).await?;
            match key {
                Some(key) => match view.state.get(&key) {
                    Some(value) => out(value.as_str()),
                    None => Err(Failure::failed(format!("{room} has no key {key:?}"))),
                },
                None => {
                    let state: serde_json::Map<String, Value> = view
                        .state
                        .iter()
                        .map(|(k, v)| (k.clone(), v.parse().unwrap_or(Value::Null)))
                        .collect();
                    out(Value::Object(state))
                }
            }
        }
        StateAction::Set { room, key, value } => {
            let (tenant, name) = address("room", &room)?;
            let value = json_arg("the value", &value)?;
            let (room, _events) = Room::connect(link.room(&tenant, &name)).await?;
            let seq = room.state_set(key, &value).await?;
            room.close().await;
            out(seq)
        }
        StateAction::Delete { room, key } => {
            let (tenant, name) = address("room", &room)?;
            let (room, _events) = Room::connect(link.room(&tenant, &name)).await?;
            let seq = room.state_delete(key).await?;
            room.close().await;
            out(seq)
        }
    }
}

pub async fn presence(link: &Link, room: &str, set: Option<String>, watch: bool) -> Result<(), Failure> {
    let (tenant, name) = address("room", room)?;
    let data = set.map(|text| json_arg("the presence data", &text)).transpose()?;
    let (room, mut events) = Room::connect(link.room(&tenant, &name)).await?;
    if let Some(data) = &data {
        room.set_presence(data)?;
        // Our own update comes back as a presence diff: print the members after it. Diffs are
        // merged per PRESENCE_INTERVAL_MS, so it may come in `joined` (with our join) as well as
        // in `updated`; it is ours once it carries the data we set.
        let me = room.connection_id();
        let ours = |m: &edgeroom_protocol::Member| {
            Some(m.connection_id) == me && m.data.parse::<Value>().ok().as_ref() == Some(data)
        };
        loop {
            match events.recv().await {
                Some(RoomEvent::Presence(diff)) if diff.joined.iter().chain(&diff.updated).any(ours) => break,
                Some(RoomEvent::Error(error)) => return Err(error.into()),
                Some(_) => continue,
                None => return Err(Failure::failed("the connection closed")),
            }
        }
    }
    for member in room.members() {
        out(serde_json::to_string(&member).unwrap_or_default())?;
    }
    if watch {
        loop {
            let next = tokio::select! {
                next = events.recv() => next,
                _ = tokio::signal::ctrl_c() => break,
            };
            match next {
                Some(RoomEvent::Presence(diff)) => out(serde_json::to_string(&diff).unwrap_or_default())?,
                Some(RoomEvent::Error(error)) => tracing::warn!("{error}"),
                Some(_) => {}
                None => break,
            }
        }
    }
    room.close().await;
    Ok(())
}
