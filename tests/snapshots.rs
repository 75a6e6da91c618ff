//! Snapshots: the alarm-driven flush to R2, D1 and KV (here with a 1-second cadence for every
//! store; `tests/cadence.rs` tests the default, frugal one), faults in each store, restore after
//! a wipe and of an older snapshot, retention, and idle rooms — against a real `wrangler dev`.

use std::time::Duration;

use edgeroom_protocol::{RoomRecord, ServerMessage, SnapshotRecord};
use edgeroom_tests::{Client, Server, StateDir};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "snapshot-admin-key";

fn vars() -> Vec<(&'static str, &'static str)> {
    vec![
        ("FLUSH_INTERVAL_MS", "1000"),
        // Every store on every check, as these tests compare them: a snapshot once a change
        // waited a second, and the read model for any room read once.
        ("SNAPSHOT_INTERVAL_MS", "1000"),
        ("READ_MODEL_MIN_READS", "1"),
        ("READ_MODEL_INTERVAL_MS", "1000"),
        ("ADMIN_KEY", ADMIN_KEY),
        ("ALLOW_FAULT_INJECTION", "yes"),
        ("SNAPSHOT_KEEP_LAST", "3"),
    ]
}

async fn start(state: StateDir) -> Server {
    let vars = vars();
    Server::start_on_with_vars(state, &vars).await
}

struct Admin<'a> {
    server: &'a Server,
    http: reqwest::Client,
}

impl<'a> Admin<'a> {
    fn new(server: &'a Server) -> Self {
        Self { server, http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.server.http_url(path)).bearer_auth(ADMIN_KEY).send().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.server.http_url(path)).bearer_auth(ADMIN_KEY).json(&body).send().await.unwrap()
    }

    async fn snapshots(&self, room: &str) -> Vec<SnapshotRecord> {
        self.get(&format!("/v1/admin/t/acme/rooms/{room}/snapshots")).await.json().await.unwrap()
    }

    async fn indexed_seq(&self, room: &str) -> Option<u64> {
        let rooms: Vec<RoomRecord> = self.get("/v1/admin/t/acme/rooms").await.json().await.unwrap();
        rooms.into_iter().find(|r| r.room == room).map(|r| r.seq)
    }

    /// The seq of the KV read model, if KV has one (eventual reads only come from KV or the room).
    async fn kv_seq(&self, room: &str) -> Option<u64> {
        let response =
            self.http.get(self.server.http_url(&format!("/v1/t/acme/rooms/{room}"))).send().await.unwrap();
        let from_kv = response.headers()["x-edgeroom-source"] == "kv";
        let seq = response.headers()["x-edgeroom-seq"].to_str().unwrap().parse().unwrap();
        from_kv.then_some(seq)
    }

    async fn faults(&self, room: &str, fail: &[&str]) {
        let response =
            self.post(&format!("/v1/admin/t/acme/rooms/{room}/faults"), json!({"fail": fail})).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }

    /// What each store shows for the room: (R2 and D1 snapshot seq, D1 index seq, KV seq).
    async fn stores(&self, room: &str) -> (Option<u64>, Option<u64>, Option<u64>) {
        let latest = self.snapshots(room).await.into_iter().next();
        assert!(latest.as_ref().is_none_or(|s| s.in_r2), "every indexed snapshot is in R2");
        (latest.map(|s| s.seq), self.indexed_seq(room).await, self.kv_seq(room).await)
    }

    /// Waits until every store shows `seq`.
    async fn converge(&self, room: &str, seq: u64) {
        let mut last = (None, None, None);
        for _ in 0..60 {
            last = self.stores(room).await;
            if last == (Some(seq), Some(seq), Some(seq)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("stores never converged on seq {seq}: (snapshot, index, kv) = {last:?}");
    }
}

#[tokio::test]
async fn a_flush_writes_one_seq_to_r2_d1_and_kv_and_idle_rooms_stop() {
    let server = start(StateDir::new()).await;
    let admin = Admin::new(&server);
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/flushed/ws")).await;
    client.welcome().await;
    client.send_json(json!({"type": "state_set", "key": "topic", "value": "snapshots"})).await;
    client.next_event().await;
    let seq = client.publish_n(5).await;
    assert_eq!(seq, 6);
    admin.converge("flushed", 6).await;
    let snapshot = admin.snapshots("flushed").await.remove(0);
    assert_eq!(snapshot.r2_key, "snapshots/acme/flushed/00000000000000000006.snap");
    assert!(snapshot.bytes > 0);

    // Idle (a member stays connected): no more flushes.
    let count = admin.snapshots("flushed").await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(admin.snapshots("flushed").await.len(), count, "an idle room does not flush");
}

#[tokio::test]
async fn each_store_failing_in_turn_loses_nothing_and_all_converge() {
    let server = start(StateDir::new()).await;
    let admin = Admin::new(&server);
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/faulty/ws")).await;
    client.welcome().await;
    let mut seq = client.publish_n(2).await;
    admin.converge("faulty", seq).await;

    for store in ["r2", "d1", "kv"] {
        admin.faults("faulty", &[store]).await;
        let before = admin.stores("faulty").await;
        // Live traffic goes on while a store fails.
        seq = client.publish_n(3).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let during = admin.stores("faulty").await;
        // Each copy has its own cadence: a failing store holds back only its own copy.
        match store {
            // No snapshot (R2 first, then its D1 rows): the index stays; the read model moves on.
            "r2" | "d1" => assert_eq!(during, (before.0, before.1, Some(seq)), "{store} failing"),
            // KV failing: the snapshot and index move on, the read model waits.
            _ => assert_eq!(during, (Some(seq), Some(seq), before.2), "KV failing"),
        }
        admin.faults("faulty", &[]).await;
        admin.converge("faulty", seq).await;
    }
    // Every event is in history, in order.
    let seqs = server.history_seqs("acme", "faulty").await;
    assert_eq!(seqs, (1..=seq).collect::<Vec<_>>());
}

#[tokio::test]
async fn rooms_restore_after_a_wipe_and_from_an_older_snapshot() {
    let state = StateDir::new();
    let server = start(state.clone()).await;
    let admin = Admin::new(&server);
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/phoenix/ws")).await;
    client.welcome().await;
    client.send_json(json!({"type": "state_set", "key": "v", "value": 1})).await;
    client.next_event().await;
    let first = client.publish_n(2).await;
    admin.converge("phoenix", first).await;
    client.send_json(json!({"type": "state_set", "key": "v", "value": 2})).await;
    client.next_event().await;
    let second = client.publish_n(2).await;
    admin.converge("phoenix", second).await;
    drop(client);
    server.stop();

    // The object's storage is lost; D1, R2 and KV remain.
    assert!(state.wipe_room_objects() > 0, "the room object had storage to wipe");
    let server = start(state).await;
    let admin = Admin::new(&server);
    let strong: Value = reqwest::get(server.http_url("/v1/t/acme/rooms/phoenix?consistency=strong"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (strong["seq"].as_u64(), strong["state"]["v"].as_u64()),
        (Some(second), Some(2)),
        "restored from R2"
    );
    let mut client =
        Client::connect(&server.ws_url(&format!("/v1/t/acme/rooms/phoenix/ws?resume_from={first}"))).await;
    assert_eq!(client.welcome().await.seq, second);
    for expected in first + 1..=second {
        assert_eq!(client.next_event().await.seq, expected, "history came back with the snapshot");
    }

    // Restore the older snapshot: connected clients get the old state as a fresh welcome and a gap.
    let restored: Value = admin
        .post("/v1/admin/t/acme/rooms/phoenix/restore", json!({"seq": first}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(restored["restored_seq"].as_u64(), Some(first));
    assert_eq!(restored["seq"].as_u64(), Some(second), "the seq never goes back");
    match client.next_control().await {
        ServerMessage::Welcome(welcome) => {
            let v = welcome.state.iter().find(|e| e.key == "v").map(|e| e.value.as_str().to_owned());
            assert_eq!(v.as_deref(), Some("1"));
        }
        other => panic!("expected a welcome, got {other:?}"),
    }
    assert!(matches!(client.next_control().await, ServerMessage::Gap(_)));
    client.send_json(json!({"type": "publish", "body": "after"})).await;
    assert_eq!(client.next_event().await.seq, second + 1, "no seq is reused");
    let missing = admin.post("/v1/admin/t/acme/rooms/phoenix/restore", json!({"seq": 999})).await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn retention_keeps_the_newest_snapshots() {
    let server = start(StateDir::new()).await;
    let admin = Admin::new(&server);
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/many/ws")).await;
    client.welcome().await;
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let seq = client.publish_n(1).await;
        admin.converge("many", seq).await;
        seqs.push(seq);
    }
    assert_eq!(admin.snapshots("many").await.len(), 6);
    let cron = reqwest::get(server.http_url("/__scheduled?cron=17+*+*+*+*")).await.unwrap();
    assert!(cron.status().is_success(), "{}", cron.text().await.unwrap());
    let kept: Vec<u64> = admin.snapshots("many").await.iter().map(|s| s.seq).collect();
    // SNAPSHOT_KEEP_LAST=3; the newest of today is among them.
    assert_eq!(kept, seqs[3..].iter().rev().copied().collect::<Vec<_>>());
    assert!(admin.snapshots("many").await.iter().all(|s| s.in_r2));
    let gone = admin.post("/v1/admin/t/acme/rooms/many/restore", json!({"seq": seqs[0]})).await;
    assert_eq!(gone.status(), 404, "deleted snapshots are gone from the index");
}
