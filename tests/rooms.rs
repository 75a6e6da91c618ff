//! Rooms, protocol v1: shared state, presence, history and exact resume, acks and idempotency,
//! batching, bad input, heartbeats — against a real `wrangler dev`.

use std::time::Duration;

use edgeroom_protocol::{
    close_code, Body, ClientMessage, ErrorCode, Event, EventKind, Hello, PresenceSet, Publish, ServerMessage,
    StateSet, PROTOCOL_VERSION,
};
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};
use uuid::Uuid;

/// Vars that lift the per-connection rate limit, for tests that publish fast from one socket.
const FAST: &[(&str, &str)] = &[("RATE_LIMIT_PER_SEC", "100000"), ("RATE_LIMIT_BURST", "100000")];

fn room_url(server: &Server, room: &str, query: &str) -> String {
    server.ws_url(&format!("/v1/t/acme/rooms/{room}/ws{query}"))
}

fn publish(body: Value, op_id: Option<Uuid>) -> ClientMessage {
    Publish { op_id, body: Body::from_value(&body).unwrap(), topic: None }.into()
}

async fn send(client: &mut Client, message: &ClientMessage) {
    client.send_text(&message.to_json()).await;
}

async fn error_code(client: &mut Client) -> ErrorCode {
    match client.next_control().await {
        ServerMessage::Error(error) => error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Reads `count` events and checks they are exactly `first..first+count` in order.
async fn expect_seqs(client: &mut Client, first: u64, count: u64) -> Vec<Event> {
    let mut events = Vec::new();
    for expected in first..first + count {
        let event = client.next_event().await;
        assert_eq!(event.seq, expected, "events must arrive once each and in order");
        events.push(event);
    }
    events
}

#[tokio::test]
async fn fifty_clients_share_one_ordered_stream() {
    let server = Server::start().await;
    let mut clients = Vec::new();
    for i in 0..50 {
        let query = if i % 2 == 0 { "" } else { "?format=binary" };
        let mut client = Client::connect(&room_url(&server, "crowd", query)).await;
        client.welcome().await;
        clients.push(client);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let message = publish(json!({"from": i}), None);
        if i % 2 == 0 {
            send(client, &message).await;
        } else {
            client.send_message_binary(&message).await;
        }
    }
    let mut streams = Vec::new();
    for client in &mut clients {
        let events = expect_seqs(client, 1, 50).await;
        streams.push(events.into_iter().map(|e| e.body.as_str().to_owned()).collect::<Vec<_>>());
    }
    assert!(streams.windows(2).all(|pair| pair[0] == pair[1]), "every client sees the same stream");
    let mut senders: Vec<u64> = streams[0]
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).unwrap()["from"].as_u64().unwrap())
        .collect();
    senders.sort_unstable();
    assert_eq!(senders, (0..50).collect::<Vec<_>>(), "every message exactly once");
}

#[tokio::test]
async fn resume_after_missing_a_thousand_events_gets_each_once_in_order() {
    let server = Server::start_with_vars(FAST).await;
    let mut reader = Client::connect(&room_url(&server, "busy", "")).await;
    let mut writer = Client::connect(&room_url(&server, "busy", "?format=binary")).await;
    writer.welcome().await;
    for n in 0..10 {
        writer.send_message_binary(&publish(json!(n), None)).await;
    }
    let seen = expect_seqs(&mut reader, 1, 10).await;
    let last_seen = seen.last().unwrap().seq;
    drop(reader); // a forced disconnect

    for n in 0..1000 {
        writer.send_message_binary(&publish(json!({"missed": n}), None)).await;
    }
    expect_seqs(&mut writer, 1, 1010).await; // all stored and broadcast

    let mut resumed = Client::connect(&room_url(&server, "busy", &format!("?resume_from={last_seen}"))).await;
    assert_eq!(resumed.welcome().await.seq, 1010);
    let replayed = expect_seqs(&mut resumed, 11, 1000).await;
    assert_eq!(replayed[0].body.parse::<Value>().unwrap(), json!({"missed": 0}));
    // Live events follow the replay with no gap and no duplicate at the seam.
    writer.send_message_binary(&publish(json!("live"), None)).await;
    assert_eq!(resumed.next_event().await.seq, 1011);
    assert!(resumed.is_quiet_for(Duration::from_millis(300)).await);

    // The same through the `hello` handshake, in the binary form.
    let mut hello = Client::connect(&room_url(&server, "busy", "?handshake=hello&format=binary")).await;
    assert!(hello.is_quiet_for(Duration::from_millis(300)).await, "nothing before hello");
    hello
        .send_message_binary(
            &Hello { resume_from: Some(1005), client: Some("test".into()), epoch: None }.into(),
        )
        .await;
    assert_eq!(hello.welcome().await.seq, 1011);
    expect_seqs(&mut hello, 1006, 6).await;
}

#[tokio::test]
async fn resume_survives_a_runtime_restart() {
    let server = Server::start().await;
    let state = server.state();
    let mut client = Client::connect(&room_url(&server, "durable", "")).await;
    for n in 0..5 {
        send(&mut client, &publish(json!(n), None)).await;
    }
    expect_seqs(&mut client, 1, 5).await;
    drop(client);
    server.stop();

    let server = Server::start_on(state).await;
    let mut client = Client::connect(&room_url(&server, "durable", "?resume_from=2")).await;
    assert_eq!(client.welcome().await.seq, 5);
    let events = expect_seqs(&mut client, 3, 3).await;
    assert_eq!(events[0].body.parse::<Value>().unwrap(), json!(2));
}

#[tokio::test]
async fn resume_from_beyond_retention_gets_a_gap_and_the_state() {
    let mut vars = FAST.to_vec();
    vars.push(("HISTORY_MAX_EVENTS", "50"));
    let server = Server::start_with_vars(&vars).await;
    let mut writer = Client::connect(&room_url(&server, "forgetful", "")).await;
    let set = StateSet { op_id: None, key: "topic".into(), value: Body::from_value("retention").unwrap() };
    send(&mut writer, &set.into()).await;
    for n in 0..200 {
        send(&mut writer, &publish(json!(n), None)).await;
    }
    expect_seqs(&mut writer, 1, 201).await;

    let mut late = Client::connect(&room_url(&server, "forgetful", "?resume_from=3")).await;
    let welcome = late.welcome().await;
    assert_eq!(welcome.seq, 201);
    assert_eq!(welcome.state.len(), 1);
    assert_eq!(welcome.state[0].value.as_str(), r#""retention""#);
    match late.next_control().await {
        ServerMessage::Gap(gap) => assert_eq!((gap.resume_from, gap.seq), (3, 201)),
        other => panic!("expected a gap, got {other:?}"),
    }
    // Recent history is still replayed exactly.
    let mut recent = Client::connect(&room_url(&server, "forgetful", "?resume_from=195")).await;
    recent.welcome().await;
    expect_seqs(&mut recent, 196, 6).await;
}

#[tokio::test]
async fn a_retried_op_is_applied_once_and_acked_again() {
    let server = Server::start().await;
    let mut client = Client::connect(&room_url(&server, "idempotent", "")).await;
    let mut watcher = Client::connect(&room_url(&server, "idempotent", "?format=binary")).await;
    let op = Uuid::new_v4();
    let message = publish(json!("exactly once"), Some(op));
    send(&mut client, &message).await;
    send(&mut client, &message).await; // a retry, as after a lost ack
    watcher.send_message_binary(&message).await; // the same op from another socket
    let state_op = Uuid::new_v4();
    let set: ClientMessage = StateSet { op_id: Some(state_op), key: "k".into(), value: Body::null() }.into();
    send(&mut client, &set).await;
    send(&mut client, &set).await;

    let mut acks = Vec::new();
    while acks.len() < 4 {
        match client.next_control().await {
            ServerMessage::Ack(ack) => acks.push((ack.op_id, ack.seq)),
            ServerMessage::Welcome(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(acks, vec![(op, 1), (op, 1), (state_op, 2), (state_op, 2)]);
    // The watcher sees each event once, and its own retry is only acknowledged (its ack may come
    // before or after the second event).
    let mut events = Vec::new();
    let mut watcher_acks = Vec::new();
    while events.len() < 2 || watcher_acks.is_empty() {
        match watcher.next_message().await {
            ServerMessage::Event(event) => events.push((event.seq, event.kind)),
            ServerMessage::Ack(ack) => watcher_acks.push((ack.op_id, ack.seq)),
            ServerMessage::Welcome(_) | ServerMessage::Presence(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(events, vec![(1, EventKind::Message), (2, EventKind::StateSet)]);
    assert_eq!(watcher_acks, vec![(op, 1)]);
    assert!(watcher.is_quiet_for(Duration::from_millis(300)).await, "no duplicate events");
}

#[tokio::test]
async fn presence_joins_updates_and_leaves_also_after_hibernation() {
    let mut vars = vec![("LOG_LEVEL", "info")];
    vars.extend_from_slice(FAST);
    let server = Server::start_with_vars(&vars).await;
    let mut alice = Client::connect(&room_url(&server, "party", "")).await;
    let alice_id = alice.welcome().await.connection_id;
    let mut bob = Client::connect(&room_url(&server, "party", "?format=binary")).await;
    let bob_welcome = bob.welcome().await;
    let members: Vec<u64> = bob_welcome.members.iter().map(|m| m.connection_id).collect();
    assert_eq!(members, vec![alice_id, bob_welcome.connection_id]);
    let bob_id = bob_welcome.connection_id;
    assert_eq!(alice.next_presence().await.joined[0].connection_id, bob_id);

    bob.send_message_binary(
        &PresenceSet { data: Body::from_value(&json!({"cursor": [3, 4]})).unwrap() }.into(),
    )
    .await;
    let diff = alice.next_presence().await;
    assert_eq!(diff.updated.len(), 1);
    assert_eq!(diff.updated[0].data.parse::<Value>().unwrap(), json!({"cursor": [3, 4]}));
    bob.next_presence().await; // bob sees his own update

    // Stay idle until the runtime evicts the object (Rust memory gone, sockets kept). Heartbeat
    // `ping` texts are answered by the runtime without waking it; a JSON ping wakes it, and the
    // log shows whether it had to reopen the room from storage and attachments.
    let opened = |server: &Server| server.log().matches("room opened").count();
    let opened_before = opened(&server);
    let mut evicted = false;
    // workerd evicts an object after about 10 s without events.
    for _ in 0..4 {
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(3)).await;
            alice.send_text("ping").await;
            bob.send_text("ping").await;
        }
        send(&mut alice, &edgeroom_protocol::Ping { nonce: Some(1) }.into()).await;
        assert!(matches!(alice.next_control().await, ServerMessage::Pong(_)));
        if opened(&server) > opened_before {
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the object was never evicted; log:\n{}", server.log_tail());
    let mut carol = Client::connect(&room_url(&server, "party", "")).await;
    let welcome = carol.welcome().await;
    let data: Vec<(u64, Value)> =
        welcome.members.iter().map(|m| (m.connection_id, m.data.parse().unwrap())).collect();
    assert_eq!(
        data,
        vec![
            (alice_id, Value::Null),
            (bob_id, json!({"cursor": [3, 4]})),
            (welcome.connection_id, Value::Null)
        ]
    );
    assert_eq!(alice.next_presence().await.joined[0].connection_id, welcome.connection_id);
    carol.close().await;
    assert_eq!(alice.next_presence().await.left, vec![welcome.connection_id]);

    drop(bob);
    assert_eq!(alice.next_presence().await.left, vec![bob_id]);
}

#[tokio::test]
async fn bad_input_gets_error_frames_and_never_harms_the_room() {
    let vars = [("MAX_FRAME_BYTES", "1024"), ("ABUSE_MAX_STRIKES", "8")];
    let server = Server::start_with_vars(&vars).await;
    let url = room_url(&server, "robust", "");
    let mut polite = Client::connect(&url).await;
    let mut rude = Client::connect(&url).await;
    rude.welcome().await;

    rude.send_text("{not json").await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::MalformedFrame);
    rude.send_json(json!({"type": "teleport"})).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::UnknownType);
    rude.send_binary(vec![99, 1, 2, 3]).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::UnsupportedVersion);
    // A binary publish whose body string is not valid UTF-8.
    rude.send_binary(vec![PROTOCOL_VERSION, 1, 0, 2, 0xff, 0xfe, 0, 0]).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::MalformedFrame);
    rude.send_binary(vec![PROTOCOL_VERSION, 200]).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::MalformedFrame);
    rude.send_text(&publish(json!("x".repeat(2000)), None).to_json()).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::TooLarge);

    // Nothing of it was stored or broadcast; everyone is still served.
    send(&mut polite, &publish(json!("fine"), None)).await;
    assert_eq!(polite.next_event().await.seq, 1);
    assert_eq!(rude.next_event().await.seq, 1);

    // Repeated abuse closes the socket with a documented code; the room goes on.
    for _ in 0..8 {
        rude.send_text("garbage").await;
    }
    assert_eq!(rude.recv_close().await, Some(close_code::PROTOCOL_ERROR));
    let mut big = Client::connect(&url).await;
    for _ in 0..8 {
        big.send_text(&"y".repeat(2000)).await;
    }
    assert_eq!(big.recv_close().await, Some(close_code::TOO_LARGE));
    send(&mut polite, &publish(json!("still fine"), None)).await;
    assert_eq!(polite.next_event().await.seq, 2);
}

#[tokio::test]
async fn clients_over_their_rate_get_errors_then_are_closed() {
    let vars = [("RATE_LIMIT_PER_SEC", "5"), ("RATE_LIMIT_BURST", "10"), ("ABUSE_MAX_STRIKES", "30")];
    let server = Server::start_with_vars(&vars).await;
    let url = room_url(&server, "calm", "");
    let mut flood = Client::connect(&url).await;
    let mut calm = Client::connect(&url).await;
    flood.welcome().await;
    for n in 0..15 {
        send(&mut flood, &publish(json!(n), None)).await;
    }
    let mut stored = 0;
    let mut limited = 0;
    while stored + limited < 15 {
        match flood.next_message().await {
            ServerMessage::Event(_) => stored += 1,
            ServerMessage::Error(e) if e.code == ErrorCode::RateLimited => limited += 1,
            ServerMessage::Presence(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((10..=12).contains(&stored), "the burst passes ({stored} stored)");
    assert_eq!(stored + limited, 15);
    for n in 0..60 {
        send(&mut flood, &publish(json!(n), None)).await;
    }
    assert_eq!(flood.recv_close().await, Some(close_code::RATE_LIMITED));
    // The well-behaved client got exactly the stored events and is still served.
    send(&mut calm, &publish(json!("calm"), None)).await;
    let mut last = 0;
    loop {
        let event = calm.next_event().await;
        assert_eq!(event.seq, last + 1);
        last = event.seq;
        if event.body.parse::<Value>().unwrap() == json!("calm") {
            break;
        }
    }
}

#[tokio::test]
async fn silent_connections_are_dropped_and_heartbeats_keep_them() {
    let server =
        Server::start_with_vars(&[("HEARTBEAT_TIMEOUT_MS", "3000"), ("SWEEP_INTERVAL_MS", "1000")]).await;
    let url = room_url(&server, "heartbeat", "");
    let mut alive = Client::connect(&url).await;
    alive.welcome().await;
    let mut silent = Client::connect(&url).await;
    let silent_id = silent.welcome().await.connection_id;
    assert_eq!(alive.next_presence().await.joined[0].connection_id, silent_id);

    let mut left = None;
    for _ in 0..20 {
        alive.send_text("ping").await; // answered by the runtime, the object stays asleep
        match tokio::time::timeout(Duration::from_secs(1), alive.next_message()).await {
            Ok(ServerMessage::Presence(diff)) if !diff.left.is_empty() => {
                left = Some(diff.left);
                break;
            }
            _ => continue,
        }
    }
    assert_eq!(left, Some(vec![silent_id]), "the silent connection left");
    assert_eq!(silent.recv_close().await, Some(close_code::HEARTBEAT_TIMEOUT));
    send(&mut alive, &publish(json!("still here"), None)).await;
    assert_eq!(alive.next_event().await.seq, 1);
}
