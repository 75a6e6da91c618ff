//! Counters: exact under concurrency and retries (sharded or not), overflow at the i64 limits,
//! live subscribers, restarts, bad input — against a real `wrangler dev`.

use std::time::Duration;

use edgeroom_protocol::{ClientMessage, CounterAdd, CounterView, ErrorCode, ServerMessage};
use edgeroom_tests::{Client, Server};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

const CLIENTS: usize = 20;
const ADDS: usize = 500;

fn url(server: &Server, name: &str, suffix: &str) -> String {
    server.http_url(&format!("/v1/t/acme/counters/{name}{suffix}"))
}

async fn strong(server: &Server, name: &str) -> CounterView {
    reqwest::get(url(server, name, "?consistency=strong")).await.unwrap().json().await.unwrap()
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> reqwest::Response {
    http.post(url).json(&body).send().await.unwrap()
}

/// The deltas of one client: a mix of signs and sizes, with a tenth of them sent twice.
fn plan(client: usize) -> (Vec<(Uuid, i64)>, i64) {
    let mut rng = rand::rng();
    let mut ops = Vec::new();
    let mut sum = 0;
    for i in 0..ADDS {
        let delta = rng.random_range(-1000..=1000) + (client * ADDS + i) as i64 % 7;
        sum += delta;
        let op = (Uuid::new_v4(), delta);
        ops.push(op);
        if rng.random_ratio(1, 10) {
            ops.push(op); // a retry of an op that may or may not have been applied
        }
    }
    (ops, sum)
}

#[tokio::test]
async fn twenty_clients_over_websockets_give_an_exact_total() {
    // Counter sockets have the rate limit of room sockets; this test sends as fast as it can.
    let server =
        Server::start_with_vars(&[("RATE_LIMIT_PER_SEC", "100000"), ("RATE_LIMIT_BURST", "100000")]).await;
    let mut tasks = Vec::new();
    let mut expected = 0;
    for client in 0..CLIENTS {
        let (ops, sum) = plan(client);
        expected += sum;
        let ws_url = server.ws_url("/v1/t/acme/counters/likes/ws");
        tasks.push(tokio::spawn(async move {
            let mut socket = Client::connect(&ws_url).await;
            let sent = ops.len();
            for (op_id, delta) in ops {
                socket.send_text(&ClientMessage::from(CounterAdd { op_id, delta }).to_json()).await;
            }
            // Every op, retries included, is acknowledged.
            let mut acks = 0;
            while acks < sent {
                match socket.next_message().await {
                    ServerMessage::Ack(_) => acks += 1,
                    ServerMessage::Counter(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let view = strong(&server, "likes").await;
    assert_eq!(view.value, expected);
    assert_eq!(view.version, (CLIENTS * ADDS) as u64, "one version per distinct op");
}

#[tokio::test]
async fn twenty_clients_on_a_sharded_counter_give_an_exact_total() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let declared = post(&http, &url(&server, "views", "/shards"), json!({"shards": 8})).await;
    assert_eq!(declared.status(), 200);
    let mut tasks = Vec::new();
    let mut expected = 0;
    for client in 0..CLIENTS {
        let (ops, sum) = plan(client);
        expected += sum;
        let add_url = url(&server, "views", "/add");
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut shards = std::collections::BTreeSet::new();
            for (op_id, delta) in ops {
                let response = post(&http, &add_url, json!({"delta": delta, "op_id": op_id})).await;
                assert_eq!(response.status(), 200);
                shards.insert(response.json::<Value>().await.unwrap()["shard"].as_u64().unwrap());
            }
            shards
        }));
    }
    let mut shards_used = std::collections::BTreeSet::new();
    for task in tasks {
        shards_used.extend(task.await.unwrap());
    }
    assert_eq!(shards_used.len(), 8, "writes spread over every shard");
    let view = strong(&server, "views").await;
    assert_eq!((view.value, view.shards), (expected, 8));
    assert_eq!(view.version, (CLIENTS * ADDS) as u64);
    // Shards only grow.
    let shrink = post(&http, &url(&server, "views", "/shards"), json!({"shards": 2})).await;
    assert_eq!(shrink.status(), 409);
    let set = post(&http, &url(&server, "views", "/set"), json!({"value": 1, "op_id": Uuid::new_v4()})).await;
    assert_eq!(set.status(), 409, "set is refused on a sharded counter");
    let reset = post(&http, &url(&server, "views", "/reset"), json!({"op_id": Uuid::new_v4()})).await;
    assert_eq!(reset.status(), 200);
    assert_eq!(strong(&server, "views").await.value, 0);
}

#[tokio::test]
async fn overflow_at_the_i64_limits_is_an_error_and_changes_nothing() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    for (name, limit, step) in [("top", i64::MAX, 1i64), ("bottom", i64::MIN, -1i64)] {
        let set =
            post(&http, &url(&server, name, "/set"), json!({"value": limit, "op_id": Uuid::new_v4()})).await;
        assert_eq!(set.json::<Value>().await.unwrap()["value"], json!(limit));
        let over =
            post(&http, &url(&server, name, "/add"), json!({"delta": step, "op_id": Uuid::new_v4()})).await;
        assert_eq!(over.status(), 409);
        assert_eq!(over.json::<Value>().await.unwrap()["error"]["code"], "limit_exceeded");
        assert_eq!(strong(&server, name).await.value, limit, "exact at the limit, unchanged");
        let back =
            post(&http, &url(&server, name, "/add"), json!({"delta": -step, "op_id": Uuid::new_v4()})).await;
        assert_eq!(back.json::<Value>().await.unwrap()["value"], json!(limit - step));
    }
    // A sum of shards beyond i64 is reported, not wrapped.
    post(&http, &url(&server, "wide", "/shards"), json!({"shards": 2})).await;
    let mut shards_hit = std::collections::BTreeSet::new();
    while shards_hit.len() < 2 {
        let response =
            post(&http, &url(&server, "wide", "/add"), json!({"delta": i64::MAX, "op_id": Uuid::new_v4()}))
                .await;
        if response.status() == 200 {
            shards_hit.insert(response.json::<Value>().await.unwrap()["shard"].as_u64().unwrap());
        }
    }
    let read = reqwest::get(url(&server, "wide", "?consistency=strong")).await.unwrap();
    assert_eq!(read.status(), 409);
}

#[tokio::test]
async fn live_subscribers_see_every_version_in_order() {
    let server = Server::start().await;
    let ws_url = server.ws_url("/v1/t/acme/counters/live/ws");
    let mut watcher = Client::connect(&format!("{ws_url}?format=binary")).await;
    match watcher.next_message().await {
        ServerMessage::Counter(value) => assert_eq!((value.value, value.version), (0, 0)),
        other => panic!("expected the current value, got {other:?}"),
    }
    let mut writer = Client::connect(&ws_url).await;
    writer.next_message().await;
    for _ in 0..100 {
        writer
            .send_text(&ClientMessage::from(CounterAdd { op_id: Uuid::new_v4(), delta: 2 }).to_json())
            .await;
    }
    for version in 1..=100u64 {
        match watcher.next_message().await {
            ServerMessage::Counter(value) => {
                assert_eq!((value.version, value.value), (version, 2 * version as i64));
            }
            other => panic!("expected a counter frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn values_survive_a_restart_and_are_flushed_to_kv() {
    let server = Server::start_with_vars(&[("FLUSH_INTERVAL_MS", "1000")]).await;
    let state = server.state();
    let http = reqwest::Client::new();
    post(&http, &url(&server, "kept", "/add"), json!({"delta": 41, "op_id": Uuid::new_v4()})).await;
    post(&http, &url(&server, "kept", "/add"), json!({"delta": 1, "op_id": Uuid::new_v4()})).await;
    let mut from_kv = None;
    for _ in 0..40 {
        let response = reqwest::get(url(&server, "kept", "")).await.unwrap();
        if response.headers()["x-edgeroom-source"] == "kv" {
            from_kv = Some(response.json::<CounterView>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(from_kv.map(|v| (v.value, v.version)), Some((42, 2)), "the flush wrote the read model");
    server.stop();
    let server = Server::start_on(state).await;
    assert_eq!(strong(&server, "kept").await.value, 42);
}

#[tokio::test]
async fn bad_counter_input_is_refused_and_changes_nothing() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let add = url(&server, "strict", "/add");
    let cases = [
        json!({"delta": 1.5, "op_id": Uuid::new_v4()}),
        json!({"delta": "7", "op_id": Uuid::new_v4()}),
        json!({"delta": 1}),
        json!({"delta": 1, "op_id": "not-a-uuid"}),
        json!({"delta": 9223372036854775808u64, "op_id": Uuid::new_v4()}),
    ];
    for body in cases {
        let response = post(&http, &add, body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "bad_request");
    }
    let bad_name =
        post(&http, &server.http_url("/v1/t/acme/counters/bad%20name/add"), json!({"delta": 1})).await;
    assert_eq!(bad_name.status(), 400);
    assert_eq!(strong(&server, "strict").await.version, 0, "nothing was applied");
}

#[tokio::test]
async fn subscribers_of_a_sharded_counter_see_the_sum_grow_to_the_exact_total() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    post(&http, &url(&server, "wide-live", "/shards"), json!({"shards": 4})).await;
    let mut watcher = Client::connect(&server.ws_url("/v1/t/acme/counters/wide-live/ws")).await;
    match watcher.next_message().await {
        ServerMessage::Counter(value) => assert_eq!((value.value, value.version), (0, 0)),
        other => panic!("expected the current sum, got {other:?}"),
    }
    let mut shards = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let response =
            post(&http, &url(&server, "wide-live", "/add"), json!({"delta": 3, "op_id": Uuid::new_v4()}))
                .await;
        shards.insert(response.json::<Value>().await.unwrap()["shard"].as_u64().unwrap());
    }
    assert!(shards.len() > 1, "the writes used several shards");
    let mut last_version = 0;
    while last_version < 40 {
        match watcher.next_message().await {
            ServerMessage::Counter(value) => {
                assert!(value.version > last_version, "versions only grow");
                assert_eq!(value.value, 3 * value.version as i64, "each frame is a consistent sum");
                last_version = value.version;
            }
            other => panic!("expected a counter frame, got {other:?}"),
        }
    }
    assert_eq!(last_version, 40);
}

#[tokio::test]
async fn a_flooding_counter_socket_gets_the_documented_errors_and_close() {
    let server = Server::start_with_vars(&[("RATE_LIMIT_PER_SEC", "5"), ("RATE_LIMIT_BURST", "5")]).await;
    let mut socket = Client::connect(&server.ws_url("/v1/t/acme/counters/flood/ws")).await;
    assert!(matches!(socket.next_message().await, ServerMessage::Counter(_)));
    for _ in 0..60 {
        let add = CounterAdd { op_id: Uuid::new_v4(), delta: 1 };
        socket.send_text(&ClientMessage::from(add).to_json()).await;
    }
    let (mut acks, mut limited) = (0, 0);
    let code = loop {
        match socket.recv_frame_or_close().await {
            Ok(frame) => match ServerMessage::decode(&frame).unwrap() {
                ServerMessage::Ack(_) => acks += 1,
                ServerMessage::Error(error) if error.code == ErrorCode::RateLimited => limited += 1,
                ServerMessage::Counter(_) => {}
                other => panic!("unexpected {other:?}"),
            },
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(edgeroom_protocol::close_code::RATE_LIMITED));
    assert!(acks >= 5 && limited >= 20, "{acks} acks, {limited} rate-limit errors");
    // The counter took exactly the acknowledged writes.
    assert_eq!(strong(&server, "flood").await.version, acks);
}
