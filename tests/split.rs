//! The split deploy (docs/deploy.md): the router, rooms and counters Workers of `deploy/*.toml`,
//! built exactly as `scripts/deploy.sh` deploys them (no test-only features), in one `wrangler
//! dev`. Every path from one Worker to another works: the router reaches room and counter objects
//! in the other Workers (`script_name`), a counter's home shard reaches its other shards, rooms
//! flush to R2, D1 and KV where the router reads them back, and rooms export through the queue to
//! the router's consumer, which delivers to a webhook.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use edgeroom_tests::webhook::Receiver;
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};
use uuid::Uuid;

const ADMIN_KEY: &str = "split-admin-key";
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn every_path_between_the_three_workers_works() {
    let server = Server::start_split(&[("ADMIN_KEY", ADMIN_KEY)]).await;
    let http = reqwest::Client::new();

    // Router → D1: an export endpoint (before the room's first event, so the room's first read
    // of its tenant's export filter sees it).
    let receiver = Receiver::start(|_| 200).await;
    let endpoint = json!({"url": receiver.url, "secret": SECRET, "kinds": ["message"]});
    let created = server.admin_post(ADMIN_KEY, "/v1/admin/t/acme/webhooks/create", endpoint).await;
    assert_eq!(created.status(), 200, "{}", server.log_tail());

    // Router → rooms: a WebSocket and a REST publish reach the same room object.
    let mut client = Client::connect(&server.ws_url("/v1/t/acme/rooms/split/ws")).await;
    assert_eq!(client.welcome().await.seq, 0);
    client.send_json(json!({"type": "publish", "body": {"n": 1}})).await;
    assert_eq!(client.next_event().await.seq, 1);
    let published = http
        .post(server.http_url("/v1/t/acme/rooms/split/messages"))
        .json(&json!({"body": {"n": 2}}))
        .send()
        .await;
    assert_eq!(published.unwrap().status(), 200);
    assert_eq!(client.next_event().await.seq, 2);
    assert_eq!(server.history_seqs("acme", "split").await, vec![1, 2]);

    // Rooms → queue → router → webhook: both messages are exported, signed.
    let seqs = |events: &BTreeMap<String, Value>| -> BTreeSet<u64> {
        events.values().filter_map(|event| event["seq"].as_u64()).collect()
    };
    let exported = receiver.until(SECRET, "both messages exported", |events| seqs(events).len() == 2).await;
    assert_eq!(seqs(&exported), BTreeSet::from([1, 2]));

    // Rooms → R2, D1 and KV; the router reads the snapshot index and the read model back. Ten
    // reads that reach the room (KV misses) make it read-hot, so its flush publishes to KV.
    let read = || http.get(server.http_url("/v1/t/acme/rooms/split")).send();
    for _ in 0..10 {
        assert_eq!(read().await.unwrap().headers()["x-edgeroom-source"], "object");
    }
    let flushed = server.admin_post(ADMIN_KEY, "/v1/admin/t/acme/rooms/split/flush", json!({})).await;
    assert_eq!(flushed.status(), 200);
    let snapshots: Vec<Value> =
        server.admin_get(ADMIN_KEY, "/v1/admin/t/acme/rooms/split/snapshots").await.json().await.unwrap();
    assert_eq!(
        snapshots.first().map(|s| (s["seq"].as_u64(), s["in_r2"].as_bool())),
        Some((Some(2), Some(true)))
    );
    let mut from_kv = None;
    for _ in 0..40 {
        let response = read().await.unwrap();
        if response.headers()["x-edgeroom-source"] == "kv" {
            from_kv = Some(response.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(from_kv.map(|state| state["seq"].clone()), Some(json!(2)), "the read model reached KV");

    // Router → counters, and the home shard → its other shards inside the counters Worker.
    let counter = |path: &str| server.http_url(&format!("/v1/t/acme/counters/likes{path}"));
    let declared = http.post(counter("/shards")).json(&json!({"shards": 4})).send().await.unwrap();
    assert_eq!(declared.status(), 200);
    let mut shards = BTreeSet::new();
    for delta in 1..=20 {
        let body = json!({"delta": delta, "op_id": Uuid::new_v4()});
        let added: Value = http.post(counter("/add")).json(&body).send().await.unwrap().json().await.unwrap();
        shards.extend(added["shard"].as_u64());
    }
    assert!(shards.len() > 1, "adds spread over shards: {shards:?}");
    let total: Value = http.get(counter("?consistency=strong")).send().await.unwrap().json().await.unwrap();
    assert_eq!((total["value"].as_i64(), total["shards"].as_u64()), (Some(210), Some(4)));
}
