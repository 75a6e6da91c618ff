//! The promises a demanding user probed (issue 10), against a real `wrangler dev`: a failed
//! restore never starts a room from zero, epochs keep resumes exact across restores, counter ops
//! apply once across reshards and transports, frames and pages are bounded in bytes, a client
//! cannot make the room queue without bound, and small input bounds hold.

use std::time::Duration;

use edgeroom_protocol::{close_code, ClientMessage, CounterAdd, ServerMessage, SnapshotRecord};
use edgeroom_tests::{Client, Server, StateDir};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

const ADMIN_KEY: &str = "reliability-admin-key";

async fn start(state: StateDir, extra: &[(&str, &str)]) -> Server {
    let mut vars = vec![
        ("FLUSH_INTERVAL_MS", "1000"),
        ("SNAPSHOT_INTERVAL_MS", "1000"),
        ("ADMIN_KEY", ADMIN_KEY),
        ("ALLOW_FAULT_INJECTION", "yes"),
    ];
    vars.extend_from_slice(extra);
    Server::start_on_with_vars(state, &vars).await
}

async fn admin_get(server: &Server, path: &str) -> reqwest::Response {
    server.admin_get(ADMIN_KEY, path).await
}

async fn admin_post(server: &Server, path: &str, body: Value) -> reqwest::Response {
    server.admin_post(ADMIN_KEY, path, body).await
}

async fn snapshots(server: &Server, room: &str) -> Vec<SnapshotRecord> {
    admin_get(server, &format!("/v1/admin/t/acme/rooms/{room}/snapshots")).await.json().await.unwrap()
}

/// Waits until the newest indexed snapshot of `room` is at `seq`.
async fn flushed_at(server: &Server, room: &str, seq: u64) {
    for _ in 0..80 {
        if snapshots(server, room).await.first().is_some_and(|s| s.seq == seq) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("room {room} was never flushed at seq {seq}");
}

/// A room flushed twice (snapshots at `first` and `second`), then stopped and wiped.
async fn room_with_two_snapshots(state: &StateDir, room: &str) -> (u64, u64, String) {
    let server = start(state.clone(), &[]).await;
    let mut client = Client::connect(&server.ws_url(&format!("/v1/t/acme/rooms/{room}/ws"))).await;
    let epoch = client.welcome().await.epoch;
    let first = client.publish_n(3).await;
    flushed_at(&server, room, first).await;
    let second = client.publish_n(3).await;
    flushed_at(&server, room, second).await;
    drop(client);
    server.stop();
    assert!(state.wipe_room_objects() > 0);
    (first, second, epoch)
}

fn snapshot_key(room: &str, seq: u64) -> String {
    format!("snapshots/acme/{room}/{seq:020}.snap")
}

#[tokio::test]
async fn a_corrupt_newest_snapshot_falls_back_to_an_older_one_in_a_new_epoch() {
    let state = StateDir::new();
    let (first, second, old_epoch) = room_with_two_snapshots(&state, "phoenix").await;
    state.put_snapshot_object(&snapshot_key("phoenix", second), b"ERSN but not a snapshot at all");
    let server = start(state, &[]).await;

    // A client that saw everything of the old epoch resumes: the room came back at `first`, so
    // it must learn that history was re-created (a gap), even once `second` is reached again.
    let mut writer = Client::connect(&server.ws_url("/v1/t/acme/rooms/phoenix/ws")).await;
    let welcome = writer.welcome().await;
    assert_eq!(welcome.seq, first, "restored from the older snapshot, not from zero");
    assert_ne!(welcome.epoch, old_epoch, "a restore starts a new epoch");
    let reused = writer.publish_n((second - first) as usize).await;
    assert_eq!(reused, second, "the seq numbers after the snapshot are handed out again...");
    let url = format!("/v1/t/acme/rooms/phoenix/ws?resume_from={second}&epoch={old_epoch}");
    let mut resumer = Client::connect(&server.ws_url(&url)).await;
    assert_eq!(resumer.welcome().await.epoch, welcome.epoch);
    assert!(
        matches!(resumer.next_control().await, ServerMessage::Gap(_)),
        "...but in another epoch: a resume from the old one gets a gap"
    );
    // History pages and the room view name the new epoch.
    let page: Value = reqwest::get(server.http_url("/v1/t/acme/rooms/phoenix/history"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["epoch"], welcome.epoch.as_str());
}

#[tokio::test]
async fn a_room_whose_snapshots_are_all_unreadable_refuses_writes_instead_of_starting_empty() {
    let state = StateDir::new();
    let (first, second, _) = room_with_two_snapshots(&state, "lost").await;
    for seq in [first, second] {
        state.put_snapshot_object(&snapshot_key("lost", seq), b"garbage");
    }
    let server = start(state, &[]).await;
    let publish = reqwest::Client::new()
        .post(server.http_url("/v1/t/acme/rooms/lost/messages"))
        .json(&json!({"body": "must not get seq 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), 503);
    let body: Value = publish.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(Client::try_connect(&server.ws_url("/v1/t/acme/rooms/lost/ws")).await.err(), Some(503));
    let strong = reqwest::get(server.http_url("/v1/t/acme/rooms/lost?consistency=strong")).await.unwrap();
    assert_eq!(strong.status(), 503);
    // A new room next door is not affected.
    let other = reqwest::Client::new()
        .post(server.http_url("/v1/t/acme/rooms/fresh/messages"))
        .json(&json!({"body": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn counter_ops_apply_once_across_a_reshard_and_across_transports() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let add = |name: &str, op_id: Uuid, delta: i64| {
        let request = http.post(server.http_url(&format!("/v1/t/acme/counters/{name}/add")));
        request.json(&json!({"delta": delta, "op_id": op_id})).send()
    };
    let strong = |name: &str| {
        let url = server.http_url(&format!("/v1/t/acme/counters/{name}?consistency=strong"));
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    // Ops applied on one shard, retried after the counter grew to eight.
    let ops: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    for op in &ops {
        assert_eq!(add("grow", *op, 1).await.unwrap().status(), 200);
    }
    let shards = http
        .post(server.http_url("/v1/t/acme/counters/grow/shards"))
        .json(&json!({"shards": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(shards.status(), 200);
    for op in &ops {
        let retried: Value = add("grow", *op, 1).await.unwrap().json().await.unwrap();
        assert_eq!(retried["shard"], 0, "answered by the shard that applied it");
    }
    assert_eq!(strong("grow").await["value"], 20, "no retry applied twice");

    // The same op id by socket and by REST, on a sharded counter.
    let mut socket = Client::connect(&server.ws_url("/v1/t/acme/counters/grow/ws")).await;
    assert!(matches!(socket.next_message().await, ServerMessage::Counter(_)));
    for _ in 0..10 {
        let op_id = Uuid::new_v4();
        socket.send_text(&ClientMessage::from(CounterAdd { op_id, delta: 5 }).to_json()).await;
        loop {
            match socket.next_message().await {
                ServerMessage::Ack(ack) if ack.op_id == op_id => break,
                ServerMessage::Ack(_) | ServerMessage::Counter(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(add("grow", op_id, 5).await.unwrap().status(), 200);
    }
    assert_eq!(strong("grow").await["value"], 70, "each op once, whichever way it came");
}

#[tokio::test]
async fn frames_and_history_pages_are_bounded_in_bytes() {
    let server = Server::start().await;
    let mut writer = Client::connect(&server.ws_url("/v1/t/acme/rooms/heavy/ws")).await;
    writer.welcome().await;
    let body = "x".repeat(60_000);
    for _ in 0..40 {
        writer.send_json(json!({"type": "publish", "body": body})).await;
    }
    let mut seq = 0;
    while seq < 40 {
        seq = writer.next_event().await.seq;
    }
    // 2.4 MB to replay: it comes in frames a client with a 1 MiB frame limit can take.
    let mut resumer = Client::connect(&server.ws_url("/v1/t/acme/rooms/heavy/ws?resume_from=0")).await;
    resumer.welcome().await;
    let (mut seen, mut largest) = (0, 0);
    while seen < 40 {
        let frame = resumer.recv_frame().await;
        largest = largest.max(frame.len());
        seen += match ServerMessage::decode(&frame).unwrap() {
            ServerMessage::Events(batch) => batch.events.len(),
            ServerMessage::Event(_) => 1,
            _ => 0,
        };
    }
    assert_eq!(seen, 40);
    assert!(largest <= 300 * 1024, "largest frame {largest} bytes");
    // A history page stops at about 1 MiB of bodies; paging on gets the rest.
    let url = server.http_url("/v1/t/acme/rooms/heavy/history?limit=1000");
    let page = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    assert!(page.len() < 1_200_000, "page of {} bytes", page.len());
    let page: Value = serde_json::from_slice(&page).unwrap();
    let count = page["events"].as_array().unwrap().len();
    assert!((17..40).contains(&count), "{count} events in the first page");
}

#[tokio::test]
async fn welcome_refreshes_cannot_make_the_room_queue_without_bound() {
    let vars =
        [("SEND_BUDGET_BYTES", "2097152"), ("RATE_LIMIT_PER_SEC", "10000"), ("RATE_LIMIT_BURST", "10000")];
    let server = Server::start_with_vars(&vars).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/greedy/ws")).await;
    client.welcome().await;
    for key in 0..8 {
        client
            .send_json(json!({"type": "state_set", "key": format!("k{key}"), "value": "v".repeat(30_000)}))
            .await;
        client.next_event().await;
    }
    // ~240 KB of state per welcome; 100 refreshes would be 24 MB.
    for _ in 0..100 {
        client.send_json(json!({"type": "hello"})).await;
    }
    let mut welcomes = 0;
    let code = loop {
        match client.recv_frame_or_close().await {
            Ok(frame) => {
                welcomes +=
                    usize::from(matches!(ServerMessage::decode(&frame), Ok(ServerMessage::Welcome(_))))
            }
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(close_code::SEND_BUDGET));
    assert!(welcomes < 20, "{welcomes} welcomes before the close");
}

#[tokio::test]
async fn small_bounds_hold_for_keys_seqs_and_unsized_bodies() {
    let server = Server::start().await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/bounds/ws")).await;
    client.welcome().await;
    client.send_json(json!({"type": "state_delete", "key": "k".repeat(60_000)})).await;
    match client.next_message().await {
        ServerMessage::Error(error) => assert_eq!(error.code, edgeroom_protocol::ErrorCode::BadRequest),
        other => panic!("expected an error, got {other:?}"),
    }
    let too_big = format!("/v1/t/acme/rooms/bounds/ws?resume_from={}", u64::MAX);
    assert_eq!(Client::try_connect(&server.ws_url(&too_big)).await.err(), Some(400));

    // A chunked body (no Content-Length) over 64 KiB is refused without reading it whole.
    let address = server.http_url("/").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /v1/t/acme/rooms/bounds/messages HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{{\"body\":\"{}\"}}", "x".repeat(100_000));
    stream.write_all(format!("{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[tokio::test]
async fn r2_snapshots_whose_index_write_failed_are_deleted_by_retention() {
    let state = StateDir::new();
    let server = start(state.clone(), &[("SNAPSHOT_ORPHAN_AGE_MS", "0")]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/orphans/ws")).await;
    client.welcome().await;
    let first = client.publish_n(1).await;
    flushed_at(&server, "orphans", first).await;
    // D1 fails after the R2 write: the snapshot at `orphan` reaches R2 but no index row.
    let faults = admin_post(&server, "/v1/admin/t/acme/rooms/orphans/faults", json!({"fail": ["d1"]})).await;
    assert_eq!(faults.status(), 200);
    let orphan = client.publish_n(1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let healed = client.publish_n(1).await;
    let faults = admin_post(&server, "/v1/admin/t/acme/rooms/orphans/faults", json!({"fail": []})).await;
    assert_eq!(faults.status(), 200);
    flushed_at(&server, "orphans", healed).await;
    let cron = reqwest::get(server.http_url("/__scheduled?cron=17+*+*+*+*")).await.unwrap();
    assert!(cron.status().is_success());
    drop(client);
    server.stop();
    assert!(!state.has_snapshot_object(&snapshot_key("orphans", orphan)), "the orphan was deleted");
    assert!(state.has_snapshot_object(&snapshot_key("orphans", healed)), "indexed snapshots stay");
    assert!(state.has_snapshot_object(&snapshot_key("orphans", first)));
}
