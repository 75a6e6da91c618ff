//! Cost-aware persistence (issue 17) against a real `wrangler dev`: the KV read model is written
//! only for rooms (and counters) that REST readers read, within `READ_MODEL_INTERVAL_MS` of a
//! change; snapshots wait for `SNAPSHOT_AFTER_EVENTS` events or an idle room, and the idle-time
//! snapshot brings every event back after the object's storage is lost.

use std::time::{Duration, Instant};

use edgeroom_protocol::SnapshotRecord;
use edgeroom_tests::{Client, Server, StateDir};
use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN_KEY: &str = "cadence-admin-key";
/// `READ_MODEL_INTERVAL_MS` in these tests.
const READ_MODEL_INTERVAL: Duration = Duration::from_millis(2_000);
/// `IDLE_SNAPSHOT_MS` in these tests.
const IDLE: Duration = Duration::from_millis(3_000);
/// Room for a loaded machine on top of a documented delay.
const SLACK: Duration = Duration::from_millis(2_500);

async fn start(state: StateDir) -> Server {
    let vars = [
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "1000"),
        ("IDLE_SNAPSHOT_MS", "3000"),
        ("SNAPSHOT_INTERVAL_MS", "600000"),
        ("SNAPSHOT_AFTER_EVENTS", "20"),
        ("READ_MODEL_MIN_READS", "5"),
        ("READ_MODEL_WINDOW_MS", "60000"),
        ("READ_MODEL_INTERVAL_MS", "2000"),
    ];
    Server::start_on_with_vars(state, &vars).await
}

/// A REST read of the room: (where it came from, its seq).
async fn read(server: &Server, room: &str, strong: bool) -> (String, u64) {
    let query = if strong { "?consistency=strong" } else { "" };
    let response = reqwest::get(server.http_url(&format!("/v1/t/acme/rooms/{room}{query}"))).await.unwrap();
    assert_eq!(response.status(), 200);
    let source = response.headers()["x-edgeroom-source"].to_str().unwrap().to_owned();
    let seq = response.headers()["x-edgeroom-seq"].to_str().unwrap().parse().unwrap();
    (source, seq)
}

/// The room's live metrics (what the object counted, flush writes included).
async fn metrics(server: &Server, room: &str) -> Value {
    let path = format!("/v1/admin/t/acme/rooms/{room}/metrics");
    let body: Value = server.admin_get(ADMIN_KEY, &path).await.json().await.unwrap();
    body["live"]["metrics"].clone()
}

async fn snapshots(server: &Server, room: &str) -> Vec<SnapshotRecord> {
    let path = format!("/v1/admin/t/acme/rooms/{room}/snapshots");
    server.admin_get(ADMIN_KEY, &path).await.json().await.unwrap()
}

/// Waits (up to `within`) until `room`'s newest snapshot is at `seq`; returns how long it took.
async fn snapshot_at(server: &Server, room: &str, seq: u64, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if snapshots(server, room).await.first().is_some_and(|s| s.seq == seq) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no snapshot of {room} at seq {seq} within {within:?}: {:?}", snapshots(server, room).await);
}

#[tokio::test]
async fn readers_get_kv_within_the_interval_and_unread_rooms_write_no_kv() {
    let server = start(StateDir::new()).await;

    // A room nobody reads over REST (strong reads go to the room and are no read marks): events,
    // an idle snapshot, and not one KV write.
    let mut quiet = Client::connect(&server.ws_url("/v1/t/acme/rooms/quiet/ws")).await;
    quiet.welcome().await;
    let seq = quiet.publish_n(5).await;
    for _ in 0..10 {
        assert_eq!(read(&server, "quiet", true).await, ("object".to_owned(), seq));
    }
    snapshot_at(&server, "quiet", seq, IDLE + SLACK * 2).await;
    let counted = metrics(&server, "quiet").await;
    assert_eq!(counted["kv_writes"], 0, "an unread room writes no KV: {counted}");
    assert_eq!(counted["r2_writes"], 1, "one snapshot, when the room went idle: {counted}");
    assert_eq!(counted["d1_rows_written"], 3, "its snapshot, index and metrics rows: {counted}");
    assert_eq!(read(&server, "quiet", false).await.0, "object", "no KV value to read");

    // A room with readers: READ_MODEL_MIN_READS reads that reach the room make it put its read
    // model in KV; after that every change is in KV within READ_MODEL_INTERVAL_MS.
    let mut busy = Client::connect(&server.ws_url("/v1/t/acme/rooms/popular/ws")).await;
    busy.welcome().await;
    busy.publish_n(1).await;
    for _ in 0..5 {
        assert_eq!(read(&server, "popular", false).await, ("object".to_owned(), 1));
    }
    let started = Instant::now();
    while read(&server, "popular", false).await != ("kv".to_owned(), 1) {
        assert!(started.elapsed() < SLACK * 2, "the read model never reached KV");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for round in 2..=3 {
        let seq = busy.publish_n(1).await;
        assert_eq!(seq, round);
        let changed = Instant::now();
        loop {
            let (source, seen) = read(&server, "popular", false).await;
            assert_eq!(source, "kv", "readers keep reading KV");
            if seen == seq {
                break;
            }
            assert!(
                changed.elapsed() < READ_MODEL_INTERVAL + SLACK,
                "seq {seq} not in KV after {:?}",
                changed.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let counted = metrics(&server, "popular").await;
    assert_eq!(counted["kv_writes"], 3, "one KV write per change, none more: {counted}");

    // Counters follow the same rules: no KV until read, then KV; the D1 row when idle.
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let add = http
            .post(server.http_url("/v1/t/acme/counters/clicks/add"))
            .json(&json!({"delta": 2, "op_id": Uuid::new_v4()}))
            .send()
            .await
            .unwrap();
        assert_eq!(add.status(), 200);
    }
    let counter_source = || async {
        let response = reqwest::get(server.http_url("/v1/t/acme/counters/clicks")).await.unwrap();
        let source = response.headers()["x-edgeroom-source"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        (source, body["value"].as_i64())
    };
    let started = Instant::now();
    loop {
        let listed: Value =
            server.admin_get(ADMIN_KEY, "/v1/admin/t/acme/counters").await.json().await.unwrap();
        if listed[0]["value"] == "6" {
            break;
        }
        assert!(started.elapsed() < IDLE + SLACK * 2, "the counter's D1 row never came: {listed}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for _ in 0..5 {
        assert_eq!(counter_source().await, ("object".to_owned(), Some(6)), "unread counters write no KV");
    }
    let started = Instant::now();
    while counter_source().await != ("kv".to_owned(), Some(6)) {
        assert!(started.elapsed() < SLACK * 2, "the counter's read model never reached KV");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn snapshots_wait_for_many_events_or_an_idle_room_and_the_idle_one_restores_everything() {
    let state = StateDir::new();
    let server = start(state.clone()).await;
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/steady/ws")).await;
    client.welcome().await;
    assert_eq!(client.publish_n(1).await, 1);
    snapshot_at(&server, "steady", 1, IDLE + SLACK * 2).await;

    // A busy room (an event every 300 ms, never idle): no snapshot before SNAPSHOT_AFTER_EVENTS
    // (20) events wait for one, then one soon after.
    let mut seq = 1;
    let mut snapshotted_at = None;
    for _ in 0..40 {
        seq = client.publish_n(1).await;
        let newest = snapshots(&server, "steady").await.first().map_or(0, |s| s.seq);
        if newest > 1 {
            assert!(newest >= 21, "a snapshot at {newest} before 20 events waited");
            snapshotted_at = Some(newest);
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let snapshotted_at = snapshotted_at.expect("20 waiting events make a snapshot");
    assert!(snapshotted_at <= 30, "the snapshot came late: at {snapshotted_at}");
    assert_eq!(metrics(&server, "steady").await["r2_writes"], 2, "one R2 write per snapshot, no more");

    // Then quiet: the idle snapshot holds the last event.
    for _ in 0..3 {
        seq = client.publish_n(1).await;
    }
    let waited = snapshot_at(&server, "steady", seq, IDLE + SLACK * 2).await;
    assert!(waited + SLACK > IDLE, "not idle yet after {waited:?}");
    drop(client);
    server.stop();

    // The object's storage is lost; the idle-time snapshot in R2 has every event.
    assert!(state.wipe_room_objects() > 0, "the room object had storage to wipe");
    let server = start(state).await;
    assert_eq!(
        read(&server, "steady", true).await,
        ("object".to_owned(), seq),
        "restored at the idle snapshot"
    );
    let seqs = server.history_seqs("acme", "steady").await;
    assert_eq!(seqs, (1..=seq).collect::<Vec<_>>(), "every acknowledged event came back");
}

/// A counter written every 12 s never idles for `IDLE_SNAPSHOT_MS` (60 s here), and local
/// workerd hibernates it between writes: its D1 row still comes once its first unsaved write
/// waited `SNAPSHOT_INTERVAL_MS` (20 s here), because that time is stored, and because every
/// alarm checks (each instance's timers start anew).
#[tokio::test]
async fn a_counter_written_more_often_than_it_idles_gets_its_d1_row_on_the_interval() {
    let vars = [
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "1000"),
        ("IDLE_SNAPSHOT_MS", "60000"),
        ("SNAPSHOT_INTERVAL_MS", "20000"),
    ];
    let server = Server::start_with_vars(&vars).await;
    let http = reqwest::Client::new();
    let listed = || async {
        let body: Value =
            server.admin_get(ADMIN_KEY, "/v1/admin/t/acme/counters").await.json().await.unwrap();
        body.as_array()
            .and_then(|rows| rows.first())
            .map(|row| row["version"].as_str().unwrap_or("").to_owned())
    };
    let started = Instant::now();
    for _ in 0..4 {
        let add = json!({ "delta": 1, "op_id": Uuid::new_v4() });
        let response =
            http.post(server.http_url("/v1/t/acme/counters/busy/add")).json(&add).send().await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_secs(12)).await;
    }
    let row = listed().await;
    assert!(
        row.is_some(),
        "after {:?} of writes 12 s apart the counter has a D1 row (SNAPSHOT_INTERVAL_MS 20 s)",
        started.elapsed()
    );
}
