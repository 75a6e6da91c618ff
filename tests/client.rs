//! The Rust SDK against a real `wrangler dev`: a thousand acknowledged publishes across a SIGKILL
//! of the runtime, silent and dropped links, a server-side close, an outage longer than the
//! operations' time to live, a malformed frame, and the SDK's state, presence, counters and REST.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edgeroom_client::{
    ConnectionState, Counter, CounterEvent, CounterOptions, Error, ErrorCode, OpError, Operation,
    ReconnectPolicy, RestClient, Room, RoomEvent, RoomEvents, RoomOptions, TokenSource,
};
use edgeroom_tests::link::Link;
use edgeroom_tests::Server;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const NO_RATE_LIMIT: &[(&str, &str)] = &[("RATE_LIMIT_PER_SEC", "100000"), ("RATE_LIMIT_BURST", "100000")];

/// Options for tests: quick heartbeats and reconnects.
fn fast(base: &str, room: &str) -> RoomOptions {
    RoomOptions::new(base, "acme", room)
        .with_heartbeat(Duration::from_millis(300), Duration::from_millis(1500))
        .with_reconnect(ReconnectPolicy {
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(1000),
            ..ReconnectPolicy::default()
        })
        .with_op_ttl(Duration::from_secs(120))
        .with_pending_limits(5000, 8 << 20)
}

/// Reads events until one with `seq >= last` arrived (or `wait` passed), returning all of them.
async fn events_through(events: &mut RoomEvents, last: u64, wait: Duration) -> Vec<RoomEvent> {
    let mut seen = Vec::new();
    let _ = timeout(wait, async {
        while let Some(event) = events.recv().await {
            let done = matches!(&event, RoomEvent::Event(e) if e.seq >= last);
            seen.push(event);
            if done {
                break;
            }
        }
    })
    .await;
    seen
}

/// The seqs of the events, checking no gap was reported.
fn seqs_without_gap(events: &[RoomEvent]) -> Vec<u64> {
    assert!(!events.iter().any(|e| matches!(e, RoomEvent::Gap(_))), "unexpected gap");
    events.iter().filter_map(|e| if let RoomEvent::Event(e) = e { Some(e.seq) } else { None }).collect()
}

fn consecutive(first: u64, last: u64) -> Vec<u64> {
    (first..=last).collect()
}

/// Every body in the room's history, in order.
async fn history_bodies(rest: &RestClient, room: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    let mut after = 0;
    loop {
        let page = rest.history("acme", room, after, 1000).await.unwrap();
        let Some(last) = page.events.last().map(|e| e.seq) else { break };
        bodies.extend(page.events.iter().map(|e| e.body.parse::<Value>().unwrap()));
        after = last;
    }
    bodies
}

/// The next error the room's event stream reports. The event stream keeps every report, where
/// the connection `watch` keeps only the newest state: a short `Reconnecting` window can pass
/// unseen on a loaded machine.
async fn next_error(events: &mut RoomEvents, wait: Duration) -> Error {
    timeout(wait, async {
        loop {
            match events.recv().await {
                Some(RoomEvent::Error(error)) => return error,
                Some(_) => continue,
                None => panic!("the event stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no error reported within {wait:?}"))
}

async fn wait_for_state(
    room: &Room,
    wanted: fn(&ConnectionState) -> bool,
    wait: Duration,
) -> ConnectionState {
    let mut watch = room.watch_connection();
    let state = timeout(wait, watch.wait_for(wanted))
        .await
        .unwrap_or_else(|_| {
            panic!("connection state not reached within {wait:?}: {:?}", room.connection_state())
        })
        .unwrap()
        .clone();
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_acked_publishes_survive_a_sigkill_exactly_once() {
    let server = Server::start_with_vars(NO_RATE_LIMIT).await;
    let base = server.http_url("");
    let (_subscriber, mut subscribed) = Room::connect(fast(&base, "crash")).await.unwrap();
    let watcher =
        tokio::spawn(async move { events_through(&mut subscribed, 1000, Duration::from_secs(180)).await });
    let (publisher, _published) = Room::connect(fast(&base, "crash")).await.unwrap();

    let mut operations: Vec<Operation> = Vec::new();
    let mut server = Some(server);
    let mut killer = None;
    for n in 0..1000 {
        operations.push(publisher.publish(&json!({ "n": n })));
        if n == 400 {
            let Some(mut server) = server.take() else { unreachable!() };
            // SIGKILL the runtime while operations are in flight; the rest are issued during the
            // outage and wait in the client's buffer.
            killer = Some(tokio::spawn(async move {
                server.kill_and_restart().await;
                server
            }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let outcomes =
        timeout(Duration::from_secs(180), join_all(operations)).await.expect("every operation ends");
    let server = killer.unwrap().await.unwrap();
    let seqs: Vec<u64> = outcomes.into_iter().map(|outcome| outcome.expect("acknowledged")).collect();
    assert_eq!(seqs.iter().copied().collect::<BTreeSet<_>>(), (1..=1000).collect(), "each op acked once");

    let rest = RestClient::new(server.http_url("")).unwrap();
    let bodies = history_bodies(&rest, "crash").await;
    let numbers: Vec<i64> = bodies.iter().map(|body| body["n"].as_i64().unwrap()).collect();
    assert_eq!(numbers.len(), 1000, "history holds every acknowledged message exactly once");
    assert_eq!(numbers.iter().copied().collect::<BTreeSet<_>>(), (0..1000).collect());

    let seen = watcher.await.unwrap();
    assert_eq!(seqs_without_gap(&seen), consecutive(1, 1000), "the subscriber saw every seq once, in order");
    assert!(seen.iter().any(|e| matches!(e, RoomEvent::Error(_))), "the subscriber reported losing its link");
    assert!(seen.iter().any(|e| matches!(e, RoomEvent::Connected(c) if c.resumed)), "the subscriber resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_links_are_noticed_and_resumed_and_expired_ops_are_not_applied() {
    let mut vars = NO_RATE_LIMIT.to_vec();
    vars.push(("HEARTBEAT_TIMEOUT_MS", "2000"));
    vars.push(("SWEEP_INTERVAL_MS", "1000"));
    let server = Server::start_with_vars(&vars).await;
    let base = server.http_url("");
    let link = Link::start(base.trim_start_matches("http://").to_owned()).await;
    let rest = RestClient::new(&base).unwrap();
    let (_watcher, mut watched) = Room::connect(fast(&base, "links")).await.unwrap();
    let (client, mut client_events) = Room::connect(fast(&link.base_url(), "links")).await.unwrap();
    assert_eq!(client.publish(&json!({"phase": "first"})).await, Ok(1));

    // A silent link: nothing passes either way. The heartbeat notices it; the operations sent
    // into it are sent again after the reconnect and applied once.
    link.freeze_current();
    let silent: Vec<Operation> =
        (0..5).map(|n| client.publish(&json!({"phase": "silent", "n": n}))).collect();
    let lost = next_error(&mut client_events, Duration::from_secs(5)).await;
    assert!(matches!(lost, Error::HeartbeatTimeout(_)), "{lost:?}");
    let silent_seqs: Vec<u64> =
        join_all(silent).await.into_iter().map(|r| r.expect("acked after resume")).collect();
    assert_eq!(silent_seqs.iter().copied().collect::<BTreeSet<_>>(), (2..=6).collect());

    // A server-side close: a client that sends no heartbeat is closed with 4010 and resumes.
    let quiet_options =
        fast(&base, "links").with_heartbeat(Duration::from_secs(60), Duration::from_secs(120));
    let (_quiet, mut quiet_events) = Room::connect(quiet_options).await.unwrap();
    let closed = timeout(Duration::from_secs(20), async {
        loop {
            match quiet_events.recv().await {
                Some(RoomEvent::Error(error)) => return error,
                Some(_) => continue,
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .expect("the server closes a silent client");
    assert!(matches!(closed, Error::Closed { code: 4010, .. }), "{closed:?}");
    let during: Vec<Operation> =
        (0..3).map(|n| client.publish(&json!({"phase": "server-close", "n": n}))).collect();
    for outcome in join_all(during).await {
        outcome.expect("acked");
    }
    let quiet_seen = events_through(&mut quiet_events, 9, Duration::from_secs(20)).await;
    assert_eq!(seqs_without_gap(&quiet_seen), consecutive(7, 9), "the closed client resumed exactly");

    // An outage longer than the operations' time to live: they are reported expired, never sent.
    let short_options = fast(&link.base_url(), "links").with_op_ttl(Duration::from_millis(800));
    let (short, mut short_events) = Room::connect(short_options).await.unwrap();
    link.refuse_new(true);
    link.cut_current();
    next_error(&mut short_events, Duration::from_secs(5)).await;
    let doomed: Vec<Operation> =
        (0..3).map(|n| short.publish(&json!({"phase": "expired", "n": n}))).collect();
    for outcome in join_all(doomed).await {
        assert!(matches!(outcome, Err(OpError::Expired { .. })), "{outcome:?}");
    }
    link.refuse_new(false);
    wait_for_state(&short, |s| *s == ConnectionState::Open, Duration::from_secs(10)).await;
    assert_eq!(short.publish(&json!({"phase": "after-outage"})).await, Ok(10));
    wait_for_state(&client, |s| *s == ConnectionState::Open, Duration::from_secs(10)).await;

    // A malformed frame from the server's side is an error the app sees, then a resume.
    link.inject(Message::binary(vec![1, 0xff, 0xff, 0xff, 0xff]));
    let malformed = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(RoomEvent::Error(Error::MalformedFrame(text))) = client_events.recv().await {
                return text;
            }
        }
    })
    .await
    .expect("the malformed frame is reported");
    assert!(!malformed.is_empty());
    assert_eq!(client.publish(&json!({"phase": "after-malformed"})).await, Ok(11));

    let phases: Vec<String> = history_bodies(&rest, "links")
        .await
        .iter()
        .map(|b| b["phase"].as_str().unwrap().to_owned())
        .collect();
    let count = |phase: &str| phases.iter().filter(|p| *p == phase).count();
    assert_eq!((count("first"), count("silent"), count("server-close")), (1, 5, 3));
    assert_eq!((count("expired"), count("after-outage"), count("after-malformed")), (0, 1, 1));
    let watched_seen = events_through(&mut watched, 11, Duration::from_secs(10)).await;
    assert_eq!(seqs_without_gap(&watched_seen), consecutive(1, 11));
    let client_seen = events_through(&mut client_events, 11, Duration::from_secs(10)).await;
    assert_eq!(seqs_without_gap(&client_seen).last(), Some(&11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_presence_counters_refusals_and_rest() {
    let vars = [("RATE_LIMIT_PER_SEC", "5"), ("RATE_LIMIT_BURST", "10"), ("ABUSE_MAX_STRIKES", "30")];
    let server = Server::start_with_vars(&vars).await;
    let base = server.http_url("");
    let rest = RestClient::new(&base).unwrap();

    // Names and tokens that cannot work fail at connect, with a typed error.
    let bad_name = Room::connect(RoomOptions::new(&base, "acme", "no spaces")).await;
    assert!(matches!(bad_name, Err(Error::InvalidOptions(_))), "{:?}", bad_name.err());
    let bad_token = Room::connect(RoomOptions::new(&base, "acme", "lobby").with_token("not-a-token")).await;
    let error = bad_token.err().expect("a bad token is refused");
    assert!(error.is_auth() && !error.is_retryable(), "{error:?}");

    let (alice, mut alice_events) = Room::connect(RoomOptions::new(&base, "acme", "lobby")).await.unwrap();
    let (bob, mut bob_events) = Room::connect(RoomOptions::new(&base, "acme", "lobby")).await.unwrap();
    assert_eq!(alice.state_set("title", &json!("Planning")).await, Ok(1));
    assert_eq!(alice.state_set("owner", &json!({"name": "ada"})).await, Ok(2));
    assert_eq!(alice.state_delete("title").await, Ok(3));
    let seen = events_through(&mut alice_events, 3, Duration::from_secs(10)).await;
    assert_eq!(seqs_without_gap(&seen), vec![1, 2, 3]);
    assert_eq!(alice.state().keys().collect::<Vec<_>>(), vec!["owner"]);
    let view = rest.room("acme", "lobby", true).await.unwrap();
    assert_eq!((view.seq, view.state.keys().map(String::as_str).collect::<Vec<_>>()), (3, vec!["owner"]));
    assert_eq!(Some(view.epoch.clone()), alice.position().and_then(|p| p.epoch));

    // Presence: bob's data reaches alice as a diff and in her member list.
    bob.set_presence(&json!({"name": "Bob"})).unwrap();
    let bob_id = bob.connection_id().unwrap();
    timeout(Duration::from_secs(10), async {
        loop {
            // Diffs are merged per presence interval: when bob's join was not told yet, his
            // data comes with it.
            if let Some(RoomEvent::Presence(diff)) = alice_events.recv().await {
                let told = diff.updated.iter().chain(&diff.joined).find(|m| m.connection_id == bob_id);
                if told.is_some_and(|m| m.data.parse::<Value>().ok() == Some(json!({"name": "Bob"}))) {
                    break;
                }
            }
        }
    })
    .await
    .expect("presence update");
    let bob_seen = alice.members().into_iter().find(|m| m.connection_id == bob_id).unwrap();
    assert_eq!(bob_seen.data.parse::<Value>().unwrap(), json!({"name": "Bob"}));

    // Refusals are typed: a bad key, and the rate limit (here 5/s, burst 10).
    let long_key = "k".repeat(300);
    match alice.state_set(long_key, &1).await {
        Err(OpError::Refused { code: ErrorCode::BadRequest, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A frame the server would refuse without naming it is refused before it is sent.
    let huge = "x".repeat(70 * 1024);
    assert!(matches!(alice.publish(&huge).await, Err(OpError::TooLarge { .. })));

    // Over the rate, the client reports the refusal and sends the waiting operations again, so
    // each is applied once and acknowledged.
    let burst: Vec<Operation> = (0..15).map(|n| bob.publish(&n)).collect();
    let seqs: BTreeSet<u64> =
        join_all(burst).await.into_iter().map(|o| o.expect("applied after a resend")).collect();
    assert_eq!(seqs.len(), 15);
    let reported = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(RoomEvent::Error(Error::Server { code: ErrorCode::RateLimited, .. })) =
                bob_events.recv().await
            {
                break;
            }
        }
    })
    .await;
    assert!(reported.is_ok(), "the refusal was reported");

    // Counters: live values and acknowledged writes.
    let (likes, mut values) = Counter::connect(CounterOptions::new(&base, "acme", "likes")).await.unwrap();
    assert_eq!(likes.add(5).await, Ok(1));
    assert_eq!(likes.add(-2).await, Ok(2));
    let mut last = None;
    while last.as_ref().is_none_or(|v: &edgeroom_client::CounterValue| v.version < 2) {
        match timeout(Duration::from_secs(10), values.recv()).await.expect("counter value") {
            Some(CounterEvent::Value(value)) => last = Some(value),
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("ended"),
        }
    }
    assert_eq!(last.map(|v| v.value), Some(3));
    assert_eq!(likes.set(10).await, Ok(3));
    let written = rest.counter_add("acme", "likes", 1, uuid::Uuid::new_v4()).await.unwrap();
    assert_eq!(written.value, 11);
    assert_eq!(rest.counter("acme", "likes", true).await.unwrap().value, 11);
    assert_eq!(likes.reset().await, Ok(5));
    likes.close().await;
    assert!(matches!(likes.add(1).await, Err(OpError::Closed { .. })));
    alice.close().await;
    assert!(matches!(alice.connection_state(), ConnectionState::Closed { reason: Error::Shutdown }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_positions_resume_exactly_and_restores_surface_as_gaps() {
    let server = Server::start_with_vars(&[
        ("FLUSH_INTERVAL_MS", "500"),
        ("IDLE_SNAPSHOT_MS", "1000"),
        ("ADMIN_KEY", "client-admin-key"),
    ])
    .await;
    let base = server.http_url("");
    let (writer, _writer_events) = Room::connect(fast(&base, "saved")).await.unwrap();
    let (reader, mut read) = Room::connect(fast(&base, "saved")).await.unwrap();
    writer.state_set("topic", &"first").await.unwrap();
    for n in 2..=3 {
        writer.publish(&n).await.unwrap();
    }
    events_through(&mut read, 3, Duration::from_secs(10)).await;
    // A position saved by one client (or process) continues exactly in another.
    let saved = reader.position().unwrap();
    assert_eq!(saved.seq, 3);
    reader.close().await;
    writer.publish(&4).await.unwrap();
    writer.publish(&5).await.unwrap();
    let (resumed, mut resumed_events) =
        Room::connect(fast(&base, "saved").with_resume(saved.clone())).await.unwrap();
    let seen = events_through(&mut resumed_events, 5, Duration::from_secs(10)).await;
    assert!(matches!(&seen[0], RoomEvent::Connected(c) if c.resumed && c.seq == 5), "{:?}", seen[0]);
    assert_eq!(seqs_without_gap(&seen), vec![4, 5]);
    assert_eq!(resumed.state().get("topic").map(|v| v.as_str().to_owned()), Some("\"first\"".to_owned()));

    // An admin restore re-creates history: a connected client gets a gap with the fresh state and
    // the new epoch, explicitly.
    let admin = RestClient::new(&base).unwrap().with_admin_key(Some("client-admin-key".into()));
    let mut snapshots = Vec::new();
    for _ in 0..40 {
        snapshots = admin.snapshots("acme", "saved").await.unwrap();
        if snapshots.iter().any(|s| s.seq == 5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(snapshots.iter().any(|s| s.seq == 5), "{snapshots:?}");
    writer.state_set("topic", &"second").await.unwrap();
    events_through(&mut resumed_events, 6, Duration::from_secs(10)).await;
    admin.restore("acme", "saved", Some(5)).await.unwrap();
    let gap = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(RoomEvent::Gap(gap)) = resumed_events.recv().await {
                return gap;
            }
        }
    })
    .await
    .expect("the restore surfaces as a gap");
    assert_ne!(Some(gap.epoch.clone()), saved.epoch, "a restore starts a new epoch");
    assert_eq!(gap.state.get("topic").map(|v| v.as_str().to_owned()), Some("\"first\"".to_owned()));
    assert_eq!(resumed.position().unwrap().epoch, Some(gap.epoch.clone()));
    assert_eq!(resumed.state().get("topic").map(|v| v.as_str().to_owned()), Some("\"first\"".to_owned()));

    // Resuming with the old epoch also gets a gap rather than events that only share numbers.
    let (_stale, mut stale_events) = Room::connect(fast(&base, "saved").with_resume(saved)).await.unwrap();
    let first_two: Vec<RoomEvent> = timeout(Duration::from_secs(10), async {
        vec![stale_events.recv().await.unwrap(), stale_events.recv().await.unwrap()]
    })
    .await
    .unwrap();
    assert!(
        matches!(&first_two[1], RoomEvent::Gap(g) if g.resume_from == 3 && g.epoch == gap.epoch),
        "{first_two:?}"
    );

    // An operator's kick is final: the client closes with the reason instead of coming back.
    admin.kick("acme", "saved", resumed.connection_id().unwrap()).await.unwrap();
    let kicked =
        wait_for_state(&resumed, |s| matches!(s, ConnectionState::Closed { .. }), Duration::from_secs(10))
            .await;
    assert!(
        matches!(kicked, ConnectionState::Closed { reason: Error::Closed { code: 4013, .. } }),
        "{kicked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_source_outlives_expiring_tokens_and_a_fixed_expired_token_closes() {
    let vars = [
        ("AUTH_MODE", "token"),
        ("TENANT_SECRETS", r#"{"acme":"acme-secret-0123456789"}"#),
        ("HEARTBEAT_TIMEOUT_MS", "4000"),
        ("SWEEP_INTERVAL_MS", "1000"),
    ];
    let server = Server::start_with_vars(&vars).await;
    let base = server.http_url("");
    // Tokens valid for 2 s; the server closes clients silent for 4 s, so every reconnect needs a
    // fresh token.
    fn short_token() -> String {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let grant = edgeroom_auth::RoomGrant {
            room: "*".into(),
            rights: vec![edgeroom_client::Right::Read, edgeroom_client::Right::Write],
        };
        let claims = edgeroom_auth::Claims {
            sub: "ada".into(),
            tenant: "acme".into(),
            rooms: vec![grant],
            exp: now + 2,
            nbf: None,
        };
        edgeroom_auth::sign(&claims, "acme-secret-0123456789").unwrap()
    }
    let minted = Arc::new(AtomicUsize::new(0));
    let counter = minted.clone();
    let source: TokenSource = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(short_token()) })
    });
    let quiet =
        |options: RoomOptions| options.with_heartbeat(Duration::from_secs(60), Duration::from_secs(120));
    let (fresh, mut fresh_events) =
        Room::connect(quiet(fast(&base, "tokens")).with_token_source(source)).await.unwrap();
    let (fixed, _fixed_events) =
        Room::connect(quiet(fast(&base, "tokens")).with_token(short_token())).await.unwrap();

    // The server closes both; the fixed token has expired by then, which no retry can fix.
    let closed =
        wait_for_state(&fixed, |s| matches!(s, ConnectionState::Closed { .. }), Duration::from_secs(20))
            .await;
    let ConnectionState::Closed { reason } = closed else { unreachable!() };
    assert!(reason.is_auth(), "{reason:?}");
    // The source gave the other client a fresh token and it resumed.
    timeout(Duration::from_secs(20), async {
        loop {
            if let Some(RoomEvent::Connected(c)) = fresh_events.recv().await {
                if c.resumed {
                    break;
                }
            }
        }
    })
    .await
    .expect("resumed with a fresh token");
    assert!(minted.load(Ordering::SeqCst) >= 2);
    assert!(fresh.publish(&"still here").await.is_ok());
}
