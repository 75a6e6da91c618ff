//! The operator side of the admin API against a real `wrangler dev`: metrics that match a known
//! load, kicking and closing connections, flushing now, the tenant overview with its cost, rooms
//! sorted and paged, the read-only tail, and counters.

use std::time::Duration;

use edgeroom_protocol::close_code;
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN_KEY: &str = "operations-admin-key";

async fn start() -> Server {
    Server::start_with_vars(&[
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "1000"),
        ("IDLE_SNAPSHOT_MS", "1000"),
    ])
    .await
}

async fn get(server: &Server, path: &str) -> Value {
    let response =
        reqwest::Client::new().get(server.http_url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn post(server: &Server, path: &str, body: Value) -> reqwest::Response {
    server.admin_post(ADMIN_KEY, path, body).await
}

#[tokio::test]
async fn metrics_match_a_known_load_and_operators_can_act_on_a_room() {
    let server = start().await;
    let url = server.ws_url("/v1/t/acme/rooms/metered/ws");
    let (mut clients, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut client = Client::connect(&url).await;
        ids.push(client.welcome().await.connection_id);
        clients.push(client);
    }
    // Let the joins' presence diffs arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tail_url = server.ws_url(&format!("/v1/admin/t/acme/rooms/metered/tail?admin_key={ADMIN_KEY}"));
    assert_eq!(
        Client::try_connect(&server.ws_url("/v1/admin/t/acme/rooms/metered/tail?admin_key=wrong"))
            .await
            .err(),
        Some(401)
    );
    let mut tail = Client::connect(&tail_url).await;
    let before: Value = get(&server, "/v1/admin/t/acme/rooms/metered/metrics").await;
    let (events_before, deliveries_before, rows_before) = (
        before["live"]["metrics"]["events"].as_u64().unwrap(),
        before["live"]["metrics"]["deliveries"].as_u64().unwrap(),
        before["live"]["metrics"]["rows_written"].as_u64().unwrap(),
    );
    for n in 0..100 {
        let sender = &mut clients[n % 3];
        sender.send_json(json!({"type": "publish", "op_id": Uuid::new_v4(), "body": n})).await;
    }
    for client in &mut clients {
        let mut seen = 0;
        while seen < 100 {
            client.next_event().await;
            seen += 1;
        }
    }
    let mut tailed = 0;
    while tailed < 100 {
        tail.next_event().await;
        tailed += 1;
    }
    let after: Value = get(&server, "/v1/admin/t/acme/rooms/metered/metrics").await;
    let metrics = &after["live"]["metrics"];
    assert_eq!(metrics["events"].as_u64().unwrap() - events_before, 100);
    // Three members and the tail receive each of the 100 events.
    assert_eq!(metrics["deliveries"].as_u64().unwrap() - deliveries_before, 400);
    assert!(metrics["acks"].as_u64().unwrap() >= 100);
    // Events stored together share a row, and op ids are not indexed: at most a row per event.
    let rows = metrics["rows_written"].as_u64().unwrap() - rows_before;
    assert!((1..=100).contains(&rows), "{metrics}");
    assert!(metrics["frames_in"].as_u64().unwrap() >= 100);
    assert_eq!(after["live"]["connections"], 4);
    assert_eq!(after["live"]["members"].as_array().unwrap().len(), 3, "the tail is not a member");
    assert!(after["live"]["units"]["object_requests"].as_f64().unwrap() > 0.0);

    // Flush now: the snapshot is listed and the metrics history has a point.
    let flushed = post(&server, "/v1/admin/t/acme/rooms/metered/flush", json!({})).await;
    assert_eq!(flushed.status(), 200, "{}", flushed.text().await.unwrap());
    let snapshots = get(&server, "/v1/admin/t/acme/rooms/metered/snapshots").await;
    assert!(!snapshots.as_array().unwrap().is_empty());
    let history = get(&server, "/v1/admin/t/acme/rooms/metered/metrics?window_ms=3600000").await;
    assert!(!history["history"].as_array().unwrap().is_empty());
    assert!(history["cost"]["per_1000_deliveries"]["object_requests"].as_f64().is_some());
    let overview = get(&server, "/v1/admin/t/acme").await;
    assert_eq!(overview["rooms"], 1);
    assert!(overview["activity"]["events"].as_u64().unwrap() >= 100);
    assert!(overview["cost"]["estimate"]["lines"].as_array().unwrap().len() >= 5);

    // Kick one client, then close the room: the documented close codes.
    let id = ids[0];
    let kicked = post(&server, "/v1/admin/t/acme/rooms/metered/kick", json!({"connection_id": id})).await;
    assert_eq!(kicked.status(), 200);
    assert_eq!(clients[0].recv_close().await, Some(close_code::KICKED));
    let missing =
        post(&server, "/v1/admin/t/acme/rooms/metered/kick", json!({"connection_id": 999_999})).await;
    assert_eq!(missing.status(), 404);
    let closed: Value =
        post(&server, "/v1/admin/t/acme/rooms/metered/close", json!({})).await.json().await.unwrap();
    assert_eq!(closed["affected"], 3);
    assert_eq!(clients[1].recv_close().await, Some(close_code::ROOM_CLOSED));
    assert_eq!(tail.recv_close().await, Some(close_code::ROOM_CLOSED));
}

#[tokio::test]
async fn rooms_are_sorted_searched_and_paged_and_counters_listed_and_reset() {
    let server = start().await;
    for (room, members) in [("alpha", 1), ("beta", 3), ("gamma", 2)] {
        let mut clients = Vec::new();
        for _ in 0..members {
            let mut client = Client::connect(&server.ws_url(&format!("/v1/t/acme/rooms/{room}/ws"))).await;
            client.welcome().await;
            clients.push(client);
        }
        clients[0].publish_n(1).await;
        let flushed = post(&server, &format!("/v1/admin/t/acme/rooms/{room}/flush"), json!({})).await;
        assert_eq!(flushed.status(), 200);
    }
    let names = |rooms: Value| -> Vec<String> {
        rooms.as_array().unwrap().iter().map(|r| r["room"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(get(&server, "/v1/admin/t/acme/rooms?sort=name").await), ["alpha", "beta", "gamma"]);
    assert_eq!(names(get(&server, "/v1/admin/t/acme/rooms?sort=members").await), ["beta", "gamma", "alpha"]);
    assert_eq!(names(get(&server, "/v1/admin/t/acme/rooms?sort=name&limit=1&offset=1").await), ["beta"]);
    assert_eq!(names(get(&server, "/v1/admin/t/acme/rooms?q=amm").await), ["gamma"]);
    let bad = reqwest::Client::new()
        .get(server.http_url("/v1/admin/t/acme/rooms?sort=mood"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let http = reqwest::Client::new();
    let add = http
        .post(server.http_url("/v1/t/acme/counters/likes/add"))
        .json(&json!({"delta": 5, "op_id": Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(add.status(), 200);
    let mut listed = Value::Null;
    for _ in 0..40 {
        listed = get(&server, "/v1/admin/t/acme/counters").await;
        if listed.as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(listed[0]["name"], "likes");
    assert_eq!(listed[0]["value"], "5");
    assert_eq!(listed[0]["version"], "1", "one write");
    assert_eq!(listed[0]["subscribers"], 0);
    let mut watcher = Client::connect(&server.ws_url("/v1/t/acme/counters/likes/ws")).await;
    watcher.next_message().await;
    let listed = get(&server, "/v1/admin/t/acme/counters").await;
    assert_eq!(listed[0]["subscribers"], 1, "live subscribers are counted");
    let reset: Value =
        post(&server, "/v1/admin/t/acme/counters/likes/reset", json!({})).await.json().await.unwrap();
    assert_eq!(reset["value"], 0);
}

#[tokio::test]
async fn counters_count_their_requests_frames_rows_and_flushes_and_the_overview_includes_them() {
    let server = start().await;
    let http = reqwest::Client::new();
    for delta in [1, 2] {
        let add = http
            .post(server.http_url("/v1/t/acme/counters/meter/add"))
            .json(&json!({"delta": delta, "op_id": Uuid::new_v4()}))
            .send()
            .await
            .unwrap();
        assert_eq!(add.status(), 200);
    }
    let mut watcher = Client::connect(&server.ws_url("/v1/t/acme/counters/meter/ws")).await;
    watcher.next_message().await;
    watcher.send_json(json!({"type": "counter_add", "op_id": Uuid::new_v4(), "delta": 3})).await;
    // The ack and the new value, in either order.
    watcher.next_message().await;
    watcher.next_message().await;
    // REST readers make the counter keep its read model in KV (READ_MODEL_MIN_READS, 10).
    for _ in 0..12 {
        let read = http.get(server.http_url("/v1/t/acme/counters/meter")).send().await.unwrap();
        assert_eq!(read.status(), 200);
    }
    // Wait for the flushes (1 s apart here) to write D1, KV and the metrics series of all three.
    let flushed_events = |metrics: &Value| -> u64 {
        metrics["history"]
            .as_array()
            .map_or(0, |h| h.iter().map(|p| p["metrics"]["events"].as_u64().unwrap_or(0)).sum())
    };
    let mut metrics = Value::Null;
    for _ in 0..40 {
        metrics = get(&server, "/v1/admin/t/acme/counters/meter/metrics").await;
        if flushed_events(&metrics) >= 3 && metrics["live"]["metrics"]["kv_writes"].as_u64() >= Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(flushed_events(&metrics), 3, "{}", metrics["history"]);
    let live = &metrics["live"];
    let counted = |name: &str| live["metrics"][name].as_u64().unwrap_or(0);
    assert_eq!(live["shards"], 1);
    assert_eq!(live["subscribers"], 1);
    assert_eq!(counted("events"), 3, "three applied writes: {live}");
    assert_eq!(counted("frames_in"), 1, "one socket write");
    assert_eq!(counted("acks"), 1);
    assert!(counted("frames_out") >= 2, "the first value, the ack and the change: {live}");
    assert!(counted("requests") >= 3, "two REST writes and the socket upgrade, at the least: {live}");
    assert!(counted("worker_requests") >= 3, "{live}");
    assert!(counted("rows_written") >= 6, "value and op row per write: {live}");
    assert!(counted("alarms") >= 1, "{live}");
    assert!(counted("kv_writes") >= 1, "the read model, for the REST readers: {live}");
    assert!(counted("d1_rows_written") >= 2, "the counter's row and its metrics row: {live}");
    assert!(live["units"]["object_requests"].as_f64().unwrap() > 3.0, "{live}");
    let line = |cost: &Value, unit: &str| {
        cost["estimate"]["lines"].as_array().unwrap().iter().find(|l| l["unit"] == unit).cloned().unwrap()
    };
    let queue = line(&metrics["cost"], "queue_ops");
    assert_eq!(queue["price"]["free_per_day"], 10_000.0);
    assert_eq!(line(&metrics["cost"], "worker_requests")["price"]["paid_usd_per_million"], 0.3);
    let history_requests: u64 = metrics["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metrics"]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(history_requests >= 3, "the flushed series carries the activity: {}", metrics["history"]);
    let overview = get(&server, "/v1/admin/t/acme").await;
    assert!(overview["counter_activity"]["events"].as_u64().unwrap() >= 1, "{overview}");
    assert!(overview["activity"]["events"].as_u64() >= overview["counter_activity"]["events"].as_u64());
    assert!(line(&overview["cost"], "kv_writes")["per_day"].as_f64().unwrap() >= 1.0);

    // The totals survive the runtime losing the object's memory (a restart of wrangler dev).
    let before = counted("events");
    drop(watcher);
    let mut server = server;
    server.kill_and_restart().await;
    let after = get(&server, "/v1/admin/t/acme/counters/meter/metrics").await;
    assert!(after["live"]["metrics"]["events"].as_u64().unwrap() >= before, "{after}");
}
