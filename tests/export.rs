//! Event export against a real `wrangler dev` with local Queues: a webhook receiver on loopback
//! gets every exported event exactly once after deduplicating by id, with valid signatures, while
//! it fails a share of the deliveries; a receiver that always fails lands its batches in the
//! dead-letter queue and a replay delivers them; an unavailable queue loses nothing; bad
//! endpoint input gets clear 400s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgeroom_tests::webhook::Receiver;
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "export-admin-key";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn start() -> Server {
    Server::start_with_vars(&[
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "1000"),
        ("ALLOW_FAULT_INJECTION", "yes"),
    ])
    .await
}

async fn admin_post(server: &Server, path: &str, body: Value) -> reqwest::Response {
    server.admin_post(ADMIN_KEY, path, body).await
}

async fn admin_get(server: &Server, path: &str) -> Value {
    reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn add_endpoint(server: &Server, url: &str, kinds: &[&str]) -> Value {
    let response = admin_post(
        server,
        "/v1/admin/t/acme/webhooks/create",
        json!({"url": url, "secret": SECRET, "kinds": kinds}),
    )
    .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn message_seqs(events: &BTreeMap<String, Value>) -> BTreeSet<u64> {
    events.values().filter(|e| e["kind"] == "message").filter_map(|e| e["seq"].as_u64()).collect()
}

#[tokio::test]
async fn every_event_arrives_once_after_dedup_while_the_receiver_fails_a_share() {
    let server = start().await;
    // Every third delivery fails: the queue retries those batches.
    let receiver = Receiver::start(|n| if n % 3 == 1 { 500 } else { 200 }).await;
    add_endpoint(&server, &receiver.url, &["message", "presence_join", "room_occupied"]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/exported/ws")).await;
    client.welcome().await;
    let mut last = 0;
    for round in 0..6 {
        for n in 0..10 {
            client.send_json(json!({"type": "publish", "body": {"round": round, "n": n}})).await;
        }
        client.send_json(json!({"type": "state_set", "key": "filtered", "value": round})).await;
        for _ in 0..11 {
            last = client.next_event().await.seq;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let events = receiver.until(SECRET, "every message", |events| message_seqs(events).len() == 60).await;
    let seqs = message_seqs(&events);
    assert_eq!(seqs.iter().copied().min(), Some(1));
    assert_eq!(seqs.len(), 60, "60 messages, each once after dedup");
    assert!(
        events.values().all(|e| e["kind"] != "state_set"),
        "kinds the endpoint did not ask for stay home"
    );
    assert!(events.values().any(|e| e["kind"] == "room_occupied"));
    assert!(last >= 66);
    assert!(
        receiver.requests.load(Ordering::SeqCst) > receiver.deliveries().len(),
        "some deliveries failed and were retried"
    );
}

#[tokio::test]
async fn a_burst_leaves_in_full_batches() {
    // The alarm (for the last, partial batch) comes a flush interval after the first event; one
    // client publishes the burst, above the per-connection rate limit.
    let server = Server::start_with_vars(&[
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "5000"),
        ("RATE_LIMIT_PER_SEC", "10000"),
        ("RATE_LIMIT_BURST", "10000"),
    ])
    .await;
    let receiver = Receiver::start(|_| 200).await;
    add_endpoint(&server, &receiver.url, &["message"]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/burst/ws")).await;
    client.welcome().await;
    for n in 0..250 {
        client.send_json(json!({"type": "publish", "body": n})).await;
    }
    for _ in 0..250 {
        client.next_event().await;
    }
    let events = receiver.until(SECRET, "every message", |events| message_seqs(events).len() == 250).await;
    assert_eq!(message_seqs(&events).len(), 250);
    // The send path hands over the two full batches, the alarm the last 50 events: three queue
    // messages (written, read and deleted: three operations each), never a small batch of what
    // came in while a send was under way.
    let metrics = admin_get(&server, "/v1/admin/t/acme/rooms/burst/metrics").await;
    assert_eq!(metrics["live"]["metrics"]["queue_ops"], 9, "{metrics}");
}

#[tokio::test]
async fn a_receiver_that_always_fails_lands_batches_in_the_dead_letter_queue_and_a_replay_delivers_them() {
    let server = start().await;
    let healthy = Arc::new(AtomicUsize::new(0));
    let gate = healthy.clone();
    let receiver = Receiver::start(move |_| if gate.load(Ordering::SeqCst) == 1 { 200 } else { 503 }).await;
    add_endpoint(&server, &receiver.url, &["message"]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/doomed/ws")).await;
    client.welcome().await;
    client.publish_n(5).await;
    let mut letters = Value::Null;
    for _ in 0..240 {
        letters = admin_get(&server, "/v1/admin/t/acme/dead-letters").await;
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let count: u64 =
        letters.as_array().expect("dead letters").iter().map(|l| l["events"].as_u64().unwrap()).sum();
    assert_eq!(count, 5, "every undeliverable event is in a dead letter: {letters}");
    assert!(receiver.deliveries().is_empty());
    healthy.store(1, Ordering::SeqCst);
    let replayed: Value =
        admin_post(&server, "/v1/admin/t/acme/dead-letters/replay", json!({})).await.json().await.unwrap();
    assert!(replayed["affected"].as_u64().unwrap() >= 1);
    let events = receiver.until(SECRET, "the replay", |events| message_seqs(events).len() == 5).await;
    assert_eq!(message_seqs(&events), (1..=5).collect());
    assert_eq!(admin_get(&server, "/v1/admin/t/acme/dead-letters").await, json!([]));
}

#[tokio::test]
async fn an_unavailable_queue_loses_nothing_and_export_catches_up() {
    let server = start().await;
    let receiver = Receiver::start(|_| 200).await;
    add_endpoint(&server, &receiver.url, &["message"]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/patient/ws")).await;
    client.welcome().await;
    let faults =
        admin_post(&server, "/v1/admin/t/acme/rooms/patient/faults", json!({"fail": ["queue"]})).await;
    assert_eq!(faults.status(), 200);
    client.publish_n(20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(receiver.deliveries().is_empty(), "nothing reached the queue while it failed");
    let cleared = admin_post(&server, "/v1/admin/t/acme/rooms/patient/faults", json!({"fail": []})).await;
    assert_eq!(cleared.status(), 200);
    let events = receiver.until(SECRET, "the catch-up", |events| message_seqs(events).len() == 20).await;
    assert_eq!(message_seqs(&events), (1..=20).collect());
}

/// The benchmarks' `discard_queue` fault: batches are encoded and counted as sent, the queue
/// never sees them. Unknown fault names are refused.
#[tokio::test]
async fn a_discarding_queue_fault_drops_batches_as_if_sent_and_unknown_faults_are_400() {
    let server = start().await;
    let unknown =
        admin_post(&server, "/v1/admin/t/acme/rooms/other/faults", json!({"fail": ["queues"]})).await;
    assert_eq!(unknown.status(), 400);
    let error: Value = unknown.json().await.unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("unknown fault"), "{error}");

    let receiver = Receiver::start(|_| 200).await;
    add_endpoint(&server, &receiver.url, &["message"]).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/bench/ws")).await;
    client.welcome().await;
    let faults =
        admin_post(&server, "/v1/admin/t/acme/rooms/bench/faults", json!({"fail": ["discard_queue"]})).await;
    assert_eq!(faults.status(), 200);
    client.publish_n(5).await;
    let since = std::time::Instant::now();
    loop {
        let metrics = admin_get(&server, "/v1/admin/t/acme/rooms/bench/metrics").await;
        if metrics["live"]["metrics"]["queue_ops"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(since.elapsed() < Duration::from_secs(15), "the batch was never handed over: {metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin_post(&server, "/v1/admin/t/acme/rooms/bench/faults", json!({"fail": []})).await;
    client.publish_n(5).await;
    receiver.until(SECRET, "the batch after the fault", |events| message_seqs(events).len() >= 5).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        message_seqs(&receiver.events(SECRET)),
        (6..=10).collect(),
        "the discarded batch never arrives"
    );
}

#[tokio::test]
async fn bad_endpoints_get_clear_400s_and_endpoints_can_be_listed_and_removed() {
    let server = start().await;
    for (body, mentions) in [
        (json!({"url": "http://example.com/hooks", "secret": SECRET, "kinds": ["message"]}), "https"),
        (
            json!({"url": "https://example.com/hooks", "secret": SECRET, "kinds": ["messages"]}),
            "unknown event kind",
        ),
        (
            json!({"url": "https://example.com/hooks", "secret": "short", "kinds": ["message"]}),
            "at least 24 bytes",
        ),
        (json!({"url": "https://example.com/hooks", "secret": SECRET, "kinds": []}), "at least one"),
    ] {
        let response = admin_post(&server, "/v1/admin/t/acme/webhooks/create", body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(mentions), "{error}");
    }
    let created = add_endpoint(&server, "https://example.com/hooks", &["message", "room_vacated"]).await;
    let listed = admin_get(&server, "/v1/admin/t/acme/webhooks").await;
    assert_eq!(listed[0]["id"], created["id"]);
    assert!(listed[0].get("secret").is_none(), "secrets are never shown");
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        admin_post(&server, &format!("/v1/admin/t/acme/webhooks/{id}/delete"), json!({})).await.status(),
        200
    );
    assert_eq!(
        admin_post(&server, &format!("/v1/admin/t/acme/webhooks/{id}/delete"), json!({})).await.status(),
        404
    );
}
