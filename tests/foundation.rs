//! Foundation: one live room on a real `wrangler dev`.

use edgeroom_protocol::{Body, ClientMessage, ErrorCode, EventKind, Publish, ServerMessage};
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};

fn room_path(tenant: &str, room: &str) -> String {
    format!("/v1/t/{tenant}/rooms/{room}/ws")
}

async fn publish(client: &mut Client, body: Value) {
    client.send_json(json!({"type": "publish", "body": body})).await;
}

/// Receives the next event (batched or not) and returns its (seq, body).
async fn recv_event(client: &mut Client) -> (u64, Value) {
    let event = client.next_event().await;
    (event.seq, event.body.parse().expect("event body is JSON"))
}

/// The code of the next `error` frame (presence and events may come first).
async fn error_code(client: &mut Client) -> ErrorCode {
    match client.next_control().await {
        ServerMessage::Error(error) => error.code,
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn get(server: &Server, path: &str) -> (u16, Value) {
    let response = reqwest::get(server.http_url(path)).await.expect("GET");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn http_routes_answer_with_json_errors() {
    let server = Server::start().await;
    let health = reqwest::get(server.http_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    for path in [
        room_path("acme", "bad%20name"),
        room_path("acme", "semi;colon"),
        room_path("bad%2Ftenant", "lobby"),
        room_path("acme", &"x".repeat(129)),
    ] {
        let (status, body) = get(&server, &path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["error"]["code"], "bad_name", "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = get(&server, "/nowhere").await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    let (status, body) = get(&server, &room_path("acme", "lobby")).await;
    assert_eq!((status, body["error"]["code"].clone()), (426, json!("upgrade_required")));
    for query in ["format=xml", "resume_from=-3", "handshake=later"] {
        let url = server.ws_url(&format!("{}?{query}", room_path("acme", "lobby")));
        assert_eq!(Client::try_connect(&url).await.err(), Some(400), "{query}");
    }

    let post =
        reqwest::Client::new().post(server.http_url(&room_path("acme", "lobby"))).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers().get("allow").map(|v| v.to_str().unwrap()), Some("GET"));
    let body: Value = post.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");

    // A name of exactly 128 characters is fine; the frames are plain JSON.
    let mut client = Client::connect(&server.ws_url(&room_path("acme", &"y".repeat(128)))).await;
    let welcome = client.recv_json().await;
    assert_eq!((welcome["type"].clone(), welcome["seq"].clone()), (json!("welcome"), json!(0)));
    publish(&mut client, json!("edge")).await;
    let event = client.recv_json().await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!((event["seq"].clone(), event["body"].clone()), (json!(1), json!("edge")));
}

#[tokio::test]
async fn two_clients_see_each_others_messages_in_order() {
    let server = Server::start().await;
    let url = server.ws_url(&room_path("acme", "lobby"));
    let mut alice = Client::connect(&url).await;
    let mut bob = Client::connect(&url).await;
    // A Rust client in the binary form joins the same room.
    let mut carol = Client::connect(&format!("{url}?format=binary")).await;

    for round in 0..5 {
        publish(&mut alice, json!({"from": "alice", "round": round})).await;
        publish(&mut bob, json!({"from": "bob", "round": round})).await;
    }
    carol
        .send_message_binary(&ClientMessage::Publish(Publish {
            op_id: None,
            body: Body::from_value(&json!({"from": "carol"})).unwrap(),
            topic: None,
        }))
        .await;

    let mut seen_by_alice = Vec::new();
    let mut seen_by_bob = Vec::new();
    for _ in 0..11 {
        seen_by_alice.push(recv_event(&mut alice).await);
        seen_by_bob.push(recv_event(&mut bob).await);
    }
    let seqs: Vec<u64> = seen_by_alice.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>(), "seq must increase by one");
    assert_eq!(seen_by_alice, seen_by_bob, "both clients see the same ordered stream");
    // Each client's own messages keep their order within the stream.
    let alice_rounds: Vec<i64> = seen_by_alice
        .iter()
        .filter(|(_, body)| body["from"] == "alice")
        .map(|(_, body)| body["round"].as_i64().unwrap())
        .collect();
    assert_eq!(alice_rounds, vec![0, 1, 2, 3, 4]);
    assert!(seen_by_alice.iter().any(|(_, body)| body["from"] == "carol"));

    // The binary client gets the same events, decoded with the protocol crate.
    assert!(matches!(carol.recv_message().await, ServerMessage::Welcome(_)), "binary welcome");
    for expected_seq in 1..=11 {
        let event = carol.next_event().await;
        assert_eq!(event.seq, expected_seq);
        assert_eq!(event.kind, EventKind::Message);
        let (_, body) = &seen_by_alice[expected_seq as usize - 1];
        assert_eq!(event.body.parse::<Value>().unwrap(), *body);
    }
}

#[tokio::test]
async fn rooms_and_tenants_are_isolated() {
    let server = Server::start().await;
    let addresses = [("acme", "lobby"), ("acme", "kitchen"), ("globex", "lobby")];
    let mut clients = Vec::new();
    for (tenant, room) in addresses {
        clients.push(Client::connect(&server.ws_url(&room_path(tenant, room))).await);
    }
    for (client, (tenant, room)) in clients.iter_mut().zip(addresses) {
        publish(client, json!(format!("{tenant}/{room}"))).await;
    }
    for (client, (tenant, room)) in clients.iter_mut().zip(addresses) {
        // Every room numbers its own events from 1 and sees only its own message.
        assert_eq!(recv_event(client).await, (1, json!(format!("{tenant}/{room}"))));
        publish(client, json!("second")).await;
        assert_eq!(recv_event(client).await, (2, json!("second")));
    }
}

#[tokio::test]
async fn seq_continues_after_a_restart() {
    let server = Server::start().await;
    let state = server.state();
    let url_path = room_path("acme", "durable");
    let mut client = Client::connect(&server.ws_url(&url_path)).await;
    for n in 1..=3 {
        publish(&mut client, json!(n)).await;
        assert_eq!(recv_event(&mut client).await.0, n);
    }
    drop(client);
    server.stop();

    let server = Server::start_on(state).await;
    let mut client = Client::connect(&server.ws_url(&url_path)).await;
    assert_eq!(client.welcome().await.seq, 3);
    publish(&mut client, json!("after restart")).await;
    assert_eq!(recv_event(&mut client).await, (4, json!("after restart")));
}

#[tokio::test]
async fn a_bad_frame_gets_an_error_and_the_room_keeps_serving() {
    let server = Server::start().await;
    let url = server.ws_url(&room_path("acme", "robust"));
    let mut rude = Client::connect(&url).await;
    let mut polite = Client::connect(&url).await;
    rude.welcome().await;
    rude.send_text("this is not json").await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::MalformedFrame);
    rude.send_json(json!({"type": "publish"})).await;
    assert_eq!(error_code(&mut rude).await, ErrorCode::MalformedFrame);

    publish(&mut polite, json!("still here")).await;
    assert_eq!(recv_event(&mut polite).await, (1, json!("still here")));
    assert_eq!(recv_event(&mut rude).await, (1, json!("still here")));
}
