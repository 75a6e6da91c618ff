//! Native tests of the room state machine on a real (in-memory) SQLite database.

use super::*;
use crate::cadence::{ReadModelWrite, Written};
use crate::sql::testing::MemorySql;
use edgeroom_protocol::{close_code, Member, Rights};
use serde_json::json;

fn room_with(limits: Limits) -> Room<MemorySql> {
    Room::open(MemorySql::new(), limits, 1).unwrap()
}

fn room() -> Room<MemorySql> {
    room_with(Limits::default())
}

/// A connection with every right, as in local dev mode.
fn options() -> ConnectOptions {
    ConnectOptions { rights: Rights::ALL, ..ConnectOptions::default() }
}

fn join(room: &mut Room<MemorySql>) -> u64 {
    room.connect(options(), 0).unwrap().id
}

fn json_frame(value: serde_json::Value) -> WireFrame {
    WireFrame::Text(value.to_string())
}

fn publish_frame(body: serde_json::Value, op_id: Option<Uuid>) -> WireFrame {
    json_frame(json!({"type": "publish", "body": body, "op_id": op_id}))
}

/// Every frame each connection would receive, with batches flattened into single events.
fn deliveries<S: Sql>(room: &mut Room<S>, id: u64) -> Vec<ServerMessage> {
    let mut out = Vec::new();
    for outgoing in room.take_outgoing() {
        if let Outgoing::Deliver { message, recipients } = outgoing {
            if recipients.contains(&id) {
                match message {
                    ServerMessage::Events(batch) => {
                        out.extend(batch.events.into_iter().map(ServerMessage::Event))
                    }
                    other => out.push(other),
                }
            }
        }
    }
    out
}

fn event_seqs(messages: &[ServerMessage]) -> Vec<u64> {
    messages.iter().filter_map(|m| if let ServerMessage::Event(e) = m { Some(e.seq) } else { None }).collect()
}

fn error_codes(messages: &[ServerMessage]) -> Vec<ErrorCode> {
    messages
        .iter()
        .filter_map(|m| if let ServerMessage::Error(e) = m { Some(e.code) } else { None })
        .collect()
}

#[test]
fn a_new_connection_is_welcomed_and_members_learn_it_joined() {
    let mut room = room();
    let alice = join(&mut room);
    let to_alice = deliveries(&mut room, alice);
    assert!(matches!(&to_alice[0], ServerMessage::Welcome(w) if w.connection_id == alice && w.seq == 0));

    let bob = join(&mut room);
    // Presence diffs go at most once per presence interval (the first one went with alice's).
    assert_eq!(room.presence_wait_ms(0), Some(Limits::default().presence_interval_ms));
    room.advance_clock(Limits::default().presence_interval_ms);
    let outgoing = room.take_outgoing();
    let joined_for_alice = outgoing.iter().any(|o| {
        matches!(o, Outgoing::Deliver { message: ServerMessage::Presence(diff), recipients }
            if recipients.contains(&alice) && diff.joined.iter().any(|m| m.connection_id == bob))
    });
    assert!(joined_for_alice, "{outgoing:?}");
    let bob_welcome = outgoing.iter().find_map(|o| match o {
        Outgoing::Deliver { message: ServerMessage::Welcome(w), recipients } if recipients == &vec![bob] => {
            Some(w)
        }
        _ => None,
    });
    let members: Vec<u64> = bob_welcome.unwrap().members.iter().map(|m| m.connection_id).collect();
    assert_eq!(members, vec![alice, bob]);
}

#[test]
fn publishes_are_stored_then_sent_to_every_member_with_increasing_seq() {
    let mut room = room();
    let alice = join(&mut room);
    let bob = join(&mut room);
    room.take_outgoing();
    room.handle_frame(alice, &publish_frame(json!({"n": 1}), None), 5);
    room.handle_frame(bob, &publish_frame(json!("two"), None), 6);
    let outgoing = room.take_outgoing();
    // Both events for the same members coalesce into one batch.
    assert_eq!(outgoing.len(), 1, "{outgoing:?}");
    let Outgoing::Deliver { message: ServerMessage::Events(batch), recipients } = &outgoing[0] else {
        panic!("expected one batch, got {outgoing:?}")
    };
    assert_eq!(recipients, &vec![alice, bob]);
    assert_eq!(batch.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(batch.events[1].sender, Some(bob));
    let stored = room.store().events_after(0, 10).unwrap();
    assert_eq!(stored.iter().map(|s| s.event.clone()).collect::<Vec<_>>(), batch.events);
}

#[test]
fn batches_respect_the_batch_size() {
    let mut room = room_with(Limits { batch_max_events: 4, ..Limits::default() });
    let alice = join(&mut room);
    room.take_outgoing();
    for n in 0..10 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    assert_eq!(room.pending_events(), 10);
    let sizes: Vec<usize> = room
        .take_outgoing()
        .iter()
        .map(|o| match o {
            Outgoing::Deliver { message: ServerMessage::Events(b), .. } => b.events.len(),
            Outgoing::Deliver { message: ServerMessage::Event(_), .. } => 1,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![4, 4, 2]);
}

#[test]
fn seq_continues_after_reopening_storage() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    let conn = room.connect(options(), 0).unwrap();
    room.handle_frame(conn.id, &publish_frame(json!(1), None), 1);
    // Events are written when the frames about them are taken to be sent.
    assert_eq!(event_seqs(&deliveries(&mut room, conn.id)), vec![1]);
    drop(room);
    let mut reopened = Room::open(sql, Limits::default(), 2).unwrap();
    reopened.restore_connection(conn.clone(), 2);
    reopened.handle_frame(conn.id, &publish_frame(json!(2), None), 2);
    assert_eq!(event_seqs(&deliveries(&mut reopened, conn.id)), vec![2]);
    // Connection ids are never reused either.
    assert!(reopened.connect(options(), 3).unwrap().id > conn.id);
}

#[test]
fn a_retried_op_is_applied_once_and_acked_with_its_original_seq() {
    let mut room = room();
    let alice = join(&mut room);
    room.handle_frame(alice, &publish_frame(json!("x"), None), 1);
    let op = Uuid::from_u128(7);
    room.handle_frame(alice, &publish_frame(json!("once"), Some(op)), 1);
    room.handle_frame(alice, &publish_frame(json!("once"), Some(op)), 1);
    let frames = deliveries(&mut room, alice);
    let acks: Vec<u64> = frames
        .iter()
        .filter_map(|m| if let ServerMessage::Ack(a) = m { Some(a.seq) } else { None })
        .collect();
    assert_eq!(acks, vec![2, 2]);
    assert_eq!(event_seqs(&frames), vec![1, 2]);
    assert_eq!(room.store().last_seq().unwrap(), 2);
}

#[test]
fn a_retry_after_the_object_woke_up_is_recognized_within_the_dedup_window() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let limits = Limits { op_dedup_window_ms: 60_000, ..Limits::default() };
    let mut room = Room::open(sql.clone(), limits.clone(), 1).unwrap();
    let alice = room.connect(options(), 0).unwrap();
    let (early, late) = (Uuid::from_u128(1), Uuid::from_u128(2));
    room.handle_frame(alice.id, &publish_frame(json!("early"), Some(early)), 1_000);
    room.take_outgoing();
    room.handle_frame(alice.id, &publish_frame(json!("late"), Some(late)), 100_000);
    room.take_outgoing();
    drop(room);
    // A new instance (after hibernation or eviction) loads recent op ids from history.
    let mut woken = Room::open(sql, limits, 2).unwrap();
    woken.restore_connection(alice.clone(), 100_500);
    woken.handle_frame(alice.id, &publish_frame(json!("late"), Some(late)), 100_500);
    let acks: Vec<u64> = deliveries(&mut woken, alice.id)
        .iter()
        .filter_map(|m| if let ServerMessage::Ack(a) = m { Some(a.seq) } else { None })
        .collect();
    assert_eq!(acks, vec![2], "the retry gets its original seq");
    assert_eq!(woken.store().last_seq().unwrap(), 2);
    // Outside the window an op id is new again (documented: OP_DEDUP_WINDOW_MS).
    woken.handle_frame(alice.id, &publish_frame(json!("early"), Some(early)), 100_600);
    woken.take_outgoing();
    assert_eq!(woken.store().last_seq().unwrap(), 3);
}

#[test]
fn events_sent_together_are_stored_in_one_row() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    let alice = room.connect(options(), 0).unwrap().id;
    let bob = room.connect(options(), 0).unwrap().id;
    room.handle_frame(bob, &json_frame(json!({"type": "hello"})), 0);
    room.take_outgoing();
    let before = sql.counts().rows_written;
    for i in 0..50u128 {
        room.handle_frame(alice, &publish_frame(json!(i), Some(Uuid::from_u128(100 + i))), 5);
    }
    let delivered = event_seqs(&deliveries(&mut room, bob));
    assert_eq!(delivered, (1..=50).collect::<Vec<_>>());
    assert_eq!(sql.counts().rows_written - before, 1, "fifty events, their op ids and acks: one row");
}

#[test]
fn a_server_publish_is_stored_before_it_is_answered() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    let before = sql.counts().rows_written;
    let request = PublishRequest { body: Body::from_value(&json!("x")).unwrap(), op_id: None, topic: None };
    room.publish_from_server(request, 1).unwrap();
    assert!(!room.store().has_unwritten());
    assert_eq!(sql.counts().rows_written - before, 1);
}

#[test]
fn when_storing_events_fails_nothing_about_them_is_sent_and_connections_close() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    let alice = room.connect(options(), 0).unwrap().id;
    room.take_outgoing();
    room.handle_frame(alice, &publish_frame(json!("lost"), Some(Uuid::from_u128(9))), 1);
    sql.query("DROP TABLE event_rows", &[]).unwrap();
    let outgoing = room.take_outgoing();
    assert!(
        outgoing.iter().all(|o| matches!(o, Outgoing::Close { code: close_code::INTERNAL, .. })),
        "no event or ack leaves: {outgoing:?}"
    );
    assert_eq!(outgoing.len(), 1);
}

#[test]
fn shared_state_is_in_the_welcome_and_changes_are_events() {
    let mut room = room();
    let alice = join(&mut room);
    let set = |key: &str, value: serde_json::Value| {
        json_frame(json!({"type": "state_set", "key": key, "value": value}))
    };
    room.handle_frame(alice, &set("title", json!("Lobby")), 1);
    room.handle_frame(alice, &set("count", json!(1)), 1);
    room.handle_frame(alice, &set("count", json!(2)), 1);
    room.handle_frame(alice, &json_frame(json!({"type": "state_delete", "key": "title"})), 1);
    let frames = deliveries(&mut room, alice);
    let kinds: Vec<EventKind> = frames
        .iter()
        .filter_map(|m| if let ServerMessage::Event(e) = m { Some(e.kind) } else { None })
        .collect();
    assert_eq!(
        kinds,
        vec![EventKind::StateSet, EventKind::StateSet, EventKind::StateSet, EventKind::StateDelete]
    );

    let bob = join(&mut room);
    let welcome = deliveries(&mut room, bob);
    let ServerMessage::Welcome(welcome) = &welcome[0] else { panic!("no welcome") };
    assert_eq!(welcome.seq, 4);
    assert_eq!(welcome.state.len(), 1);
    assert_eq!(
        (welcome.state[0].key.as_str(), welcome.state[0].value.as_str(), welcome.state[0].seq),
        ("count", "2", 3)
    );
}

#[test]
fn state_limits_refuse_without_storing() {
    let limits =
        Limits { state_max_keys: 2, state_max_value_bytes: 10, state_max_bytes: 12, ..Limits::default() };
    let mut room = room_with(limits);
    let alice = join(&mut room);
    room.take_outgoing();
    let set = |key: &str, value: &str| json_frame(json!({"type": "state_set", "key": key, "value": value}));
    room.handle_frame(alice, &set("a", "1"), 1);
    room.handle_frame(alice, &set("b", "2"), 1);
    room.handle_frame(alice, &set("c", "3"), 1); // third key
    room.handle_frame(alice, &set("a", "0123456789"), 1); // value too large
    room.handle_frame(alice, &set("", "x"), 1); // empty key
    room.handle_frame(alice, &set("b", "1234567"), 1); // fits the value limit, not the room's bytes
    room.handle_frame(alice, &set("b", "3"), 1); // replacing a key is fine
    let frames = deliveries(&mut room, alice);
    assert_eq!(
        error_codes(&frames),
        vec![ErrorCode::LimitExceeded, ErrorCode::TooLarge, ErrorCode::BadRequest, ErrorCode::LimitExceeded]
    );
    assert_eq!(event_seqs(&frames), vec![1, 2, 3]);
    assert_eq!(room.store().state_size().unwrap().keys, 2);
}

#[test]
fn resume_replays_exactly_the_missed_events_in_order() {
    let mut room = room();
    let alice = join(&mut room);
    for n in 1..=30 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    room.take_outgoing();
    let options = ConnectOptions { resume_from: Some(12), ..options() };
    let bob = room.connect(options, 2).unwrap().id;
    room.handle_frame(alice, &publish_frame(json!("live"), None), 3);
    let frames = deliveries(&mut room, bob);
    assert!(matches!(&frames[0], ServerMessage::Welcome(w) if w.seq == 30));
    assert_eq!(event_seqs(&frames), (13..=31).collect::<Vec<_>>());
}

#[test]
fn resume_beyond_history_gets_a_gap() {
    let limits = Limits { history_max_events: 10, rate_burst: 1000.0, ..Limits::default() };
    let mut room = room_with(limits);
    let alice = join(&mut room);
    for n in 1..=200 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    room.take_outgoing();
    let oldest = room.store().oldest_seq().unwrap().unwrap();
    assert!(oldest > 100, "history was trimmed (oldest {oldest})");
    for resume_from in [5, 500] {
        let options = ConnectOptions { resume_from: Some(resume_from), ..options() };
        let bob = room.connect(options, 2).unwrap().id;
        let frames = deliveries(&mut room, bob);
        assert!(
            matches!(&frames[..], [ServerMessage::Welcome(_), ServerMessage::Gap(g)] if g.resume_from == resume_from && g.seq == 200)
        );
    }
    // Resuming from within history still works.
    let options = ConnectOptions { resume_from: Some(195), ..options() };
    let carol = room.connect(options, 2).unwrap().id;
    assert_eq!(event_seqs(&deliveries(&mut room, carol)), vec![196, 197, 198, 199, 200]);
}

#[test]
fn await_hello_holds_room_traffic_until_hello() {
    let mut room = room();
    let alice = join(&mut room);
    room.handle_frame(alice, &publish_frame(json!(1), None), 1);
    room.take_outgoing();
    let options = ConnectOptions { await_hello: true, ..options() };
    let bob = room.connect(options, 1).unwrap();
    assert!(!bob.live);
    room.handle_frame(alice, &publish_frame(json!(2), None), 1);
    room.handle_frame(bob.id, &publish_frame(json!("early"), None), 1);
    let early = deliveries(&mut room, bob.id);
    assert_eq!(error_codes(&early), vec![ErrorCode::BadRequest]);
    assert_eq!(event_seqs(&early), Vec::<u64>::new());

    let saved = room.handle_frame(bob.id, &json_frame(json!({"type": "hello", "resume_from": 0})), 2);
    assert!(saved.is_some_and(|c| c.live), "the attachment must record that the connection is live");
    room.handle_frame(alice, &publish_frame(json!(3), None), 3);
    let frames = deliveries(&mut room, bob.id);
    assert!(matches!(&frames[0], ServerMessage::Welcome(w) if w.seq == 2));
    assert_eq!(event_seqs(&frames), vec![1, 2, 3]);
}

#[test]
fn a_crowd_joining_at_once_costs_each_member_a_few_presence_frames() {
    let mut room = room();
    let first = join(&mut room);
    room.handle_frame(first, &json_frame(json!({"type": "hello"})), 0);
    room.take_outgoing();
    let mut presence_frames = 0;
    for i in 1..=500u64 {
        let id = room.connect(options(), i).unwrap().id;
        room.handle_frame(id, &json_frame(json!({"type": "hello"})), i);
        // The shell sends after every join (each newcomer's welcome goes at once).
        for outgoing in room.take_outgoing() {
            if let Outgoing::Deliver { message: ServerMessage::Presence(_), recipients } = outgoing {
                presence_frames += recipients.len();
            }
        }
    }
    room.advance_clock(1_000);
    for outgoing in room.take_outgoing() {
        if let Outgoing::Deliver { message: ServerMessage::Presence(diff), recipients } = outgoing {
            presence_frames += recipients.len();
            assert!(!diff.joined.is_empty());
        }
    }
    // One diff per 50 ms interval over 0.5 s to at most 501 members, not 500 × 250.
    assert!(presence_frames <= 11 * 501, "{presence_frames} presence frames");
    assert!(presence_frames >= 500, "everyone hears of the crowd");
}

#[test]
fn presence_updates_and_leaves_reach_the_members() {
    let mut room = room();
    let alice = join(&mut room);
    let bob = join(&mut room);
    room.take_outgoing();
    let saved =
        room.handle_frame(bob, &json_frame(json!({"type": "presence_set", "data": {"cursor": [1, 2]}})), 1);
    assert_eq!(saved.and_then(|c| c.presence).as_deref(), Some(r#"{"cursor":[1,2]}"#));
    room.advance_clock(100);
    let frames = deliveries(&mut room, alice);
    let expected =
        Member { connection_id: bob, user: None, data: Body::from_json(r#"{"cursor":[1,2]}"#).unwrap() };
    assert!(matches!(&frames[..], [ServerMessage::Presence(d)] if d.updated == vec![expected.clone()]));

    room.disconnect(bob);
    room.advance_clock(200);
    let frames = deliveries(&mut room, alice);
    assert!(matches!(&frames[..], [ServerMessage::Presence(d)] if d.left == vec![bob]));
    let carol = join(&mut room);
    let ServerMessage::Welcome(welcome) = &deliveries(&mut room, carol)[0] else { panic!("no welcome") };
    assert_eq!(welcome.members.iter().map(|m| m.connection_id).collect::<Vec<_>>(), vec![alice, carol]);
}

#[test]
fn oversized_presence_is_refused() {
    let mut room = room_with(Limits { presence_max_bytes: 8, ..Limits::default() });
    let alice = join(&mut room);
    room.take_outgoing();
    let saved =
        room.handle_frame(alice, &json_frame(json!({"type": "presence_set", "data": "0123456789"})), 1);
    assert!(saved.is_none());
    assert_eq!(error_codes(&deliveries(&mut room, alice)), vec![ErrorCode::TooLarge]);
}

#[test]
fn bad_frames_get_errors_store_nothing_and_repeated_abuse_closes() {
    let limits = Limits { max_frame_bytes: 64, max_strikes: 5, ..Limits::default() };
    let mut room = room_with(limits);
    let rude = join(&mut room);
    let polite = join(&mut room);
    room.take_outgoing();
    let cases = [
        (WireFrame::Text("{oops".into()), ErrorCode::MalformedFrame),
        (json_frame(json!({"type": "teleport"})), ErrorCode::UnknownType),
        (WireFrame::Binary(vec![42, 1]), ErrorCode::UnsupportedVersion),
        // A binary publish whose body string is not UTF-8.
        (WireFrame::Binary(vec![1, 1, 0, 2, 0xff, 0xfe, 0, 0]), ErrorCode::MalformedFrame),
        (publish_frame(json!("x".repeat(100)), None), ErrorCode::TooLarge),
    ];
    for (frame, code) in cases {
        room.handle_frame(rude, &frame, 1);
        let frames = deliveries(&mut room, rude);
        assert_eq!(error_codes(&frames), vec![code], "{frame:?}");
    }
    assert_eq!(room.store().last_seq().unwrap(), 0);
    // The fifth strike closed the connection.
    room.handle_frame(rude, &WireFrame::Text("{".into()), 1);
    let closes: Vec<u16> = room
        .take_outgoing()
        .into_iter()
        .filter_map(|o| {
            if let Outgoing::Close { to, code, .. } = o {
                (to == rude).then_some(code)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(closes, vec![close_code::PROTOCOL_ERROR]);
    // Everyone else is still served.
    room.handle_frame(polite, &publish_frame(json!("fine"), None), 2);
    assert_eq!(event_seqs(&deliveries(&mut room, polite)), vec![1]);
}

#[test]
fn the_rate_limit_refuses_bursts_and_closes_persistent_floods() {
    let limits = Limits { rate_per_second: 10.0, rate_burst: 5.0, max_strikes: 20, ..Limits::default() };
    let mut room = room_with(limits);
    let alice = join(&mut room);
    room.take_outgoing();
    for _ in 0..8 {
        room.handle_frame(alice, &publish_frame(json!(1), None), 1000);
    }
    let frames = deliveries(&mut room, alice);
    assert_eq!(event_seqs(&frames).len(), 5);
    assert_eq!(error_codes(&frames), vec![ErrorCode::RateLimited; 3]);
    // A refused operation is named, so its client knows which one to send again.
    let op_id = Uuid::from_u128(99);
    room.handle_frame(alice, &publish_frame(json!("late"), Some(op_id)), 1000);
    let refused: Vec<Option<Uuid>> = deliveries(&mut room, alice)
        .into_iter()
        .filter_map(|m| if let ServerMessage::Error(e) = m { Some(e.op_id) } else { None })
        .collect();
    assert_eq!(refused, vec![Some(op_id)]);
    // 100 ms later one more token is there.
    room.handle_frame(alice, &publish_frame(json!(2), None), 1100);
    assert_eq!(event_seqs(&deliveries(&mut room, alice)), vec![6]);
    for _ in 0..20 {
        room.handle_frame(alice, &publish_frame(json!(3), None), 1100);
    }
    let closed = room
        .take_outgoing()
        .into_iter()
        .any(|o| matches!(o, Outgoing::Close { code: close_code::RATE_LIMITED, .. }));
    assert!(closed);
}

#[test]
fn silent_connections_are_found_for_the_heartbeat() {
    let mut room = room_with(Limits { heartbeat_timeout_ms: 1000, ..Limits::default() });
    let alice = room.connect(options(), 0).unwrap().id;
    let bob = room.connect(options(), 0).unwrap().id;
    room.touch(bob, 900);
    room.handle_frame(alice, &json_frame(json!({"type": "ping"})), 500);
    assert_eq!(room.silent_connections(1400), Vec::<u64>::new());
    assert_eq!(room.silent_connections(1600), vec![alice]);
    assert_eq!(room.silent_connections(2000), vec![alice, bob]);
}

#[test]
fn frames_follow_the_form_the_client_sends() {
    let mut room = room();
    let alice = join(&mut room);
    let ping = ClientMessage::Ping(Ping { nonce: Some(1) });
    let saved = room.handle_frame(alice, &WireFrame::Binary(ping.to_binary()), 1);
    assert_eq!(saved.map(|c| c.format), Some(Format::Binary));
    assert!(room.handle_frame(alice, &WireFrame::Binary(ping.to_binary()), 1).is_none());
}

#[test]
fn rights_gate_writes_and_presence() {
    let mut room = room();
    let owner = join(&mut room);
    let reader_rights: Rights = [Right::Read].into_iter().collect();
    let reader =
        room.connect(ConnectOptions { rights: reader_rights, ..ConnectOptions::default() }, 0).unwrap().id;
    let reader_frames = deliveries(&mut room, reader);
    assert!(
        matches!(&reader_frames[..], [ServerMessage::Welcome(w)] if w.members.is_empty()),
        "no presence right: no members in the welcome"
    );
    let op = Uuid::from_u128(1);
    room.handle_frame(reader, &publish_frame(json!("nope"), Some(op)), 1);
    room.handle_frame(reader, &json_frame(json!({"type": "state_set", "key": "k", "value": 1})), 1);
    room.handle_frame(reader, &json_frame(json!({"type": "presence_set", "data": 1})), 1);
    let frames = deliveries(&mut room, reader);
    assert_eq!(error_codes(&frames), vec![ErrorCode::Forbidden; 3]);
    assert!(matches!(&frames[0], ServerMessage::Error(e) if e.op_id == Some(op)));
    assert_eq!(room.store().last_seq().unwrap(), 0);

    // The reader still receives events, but never presence, and is not a member.
    room.handle_frame(owner, &json_frame(json!({"type": "presence_set", "data": "here"})), 1);
    room.handle_frame(owner, &publish_frame(json!("hello"), None), 1);
    let frames = deliveries(&mut room, reader);
    assert_eq!(event_seqs(&frames), vec![1]);
    assert!(!frames.iter().any(|m| matches!(m, ServerMessage::Presence(_))));
    let view = room.view("acme", "lobby", 5).unwrap();
    assert_eq!(view.members.iter().map(|m| m.connection_id).collect::<Vec<_>>(), vec![owner]);
}

#[test]
fn server_publishes_reach_members_and_are_idempotent() {
    let mut room = room();
    let alice = join(&mut room);
    room.take_outgoing();
    let request = |op: Option<Uuid>| PublishRequest {
        body: Body::from_value("from server").unwrap(),
        op_id: op,
        topic: None,
    };
    let op = Uuid::from_u128(9);
    assert_eq!(room.publish_from_server(request(Some(op)), 1).unwrap().seq, 1);
    assert_eq!(room.publish_from_server(request(Some(op)), 1).unwrap().seq, 1);
    assert_eq!(room.publish_from_server(request(None), 1).unwrap().seq, 2);
    let frames = deliveries(&mut room, alice);
    assert_eq!(event_seqs(&frames), vec![1, 2]);
    assert!(matches!(&frames[0], ServerMessage::Event(e) if e.sender.is_none()));
    let long_topic = PublishRequest { topic: Some("t".repeat(500)), ..request(None) };
    assert_eq!(room.publish_from_server(long_topic, 1).unwrap_err().code, ErrorCode::BadRequest);
}

#[test]
fn history_pages_and_the_view() {
    let mut room = room();
    let alice = join(&mut room);
    for n in 1..=5 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    room.handle_frame(alice, &json_frame(json!({"type": "state_set", "key": "k", "value": [1]})), 1);
    let page = room.history(2, 2).unwrap();
    assert_eq!(page.events.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!((page.seq, page.oldest), (6, Some(1)));
    let view = room.view("acme", "lobby", 77).unwrap();
    assert_eq!(view.seq, 6);
    assert_eq!(view.state.get("k").map(Body::as_str), Some("[1]"));
    assert_eq!(view.generated_ms, 77);
}

/// Everything written.
const ALL_WRITTEN: Written = Written { snapshot: true, index: true, read_model: true };

/// The plan of a flush check at `now_ms` (panics when nothing is due).
fn plan_at<S: Sql>(room: &mut Room<S>, now_ms: u64) -> FlushPlan {
    room.flush_plan(now_ms, None).unwrap().plan.expect("something to write")
}

#[test]
fn snapshots_wait_for_the_idle_time_or_the_interval_and_presence_costs_no_snapshot() {
    let mut room = room_with(Limits { idle_snapshot_ms: 30_000, ..Limits::default() });
    assert!(!room.needs_flush().unwrap());
    room.remember_names("acme", "lobby").unwrap();
    assert_eq!(room.names().unwrap(), Some(("acme".to_owned(), "lobby".to_owned())));
    let alice = join(&mut room);
    assert!(room.needs_flush().unwrap(), "a join changes presence");
    let check = room.flush_plan(10_000, None).unwrap();
    assert!(check.plan.is_none() && check.next_ms.is_none(), "presence alone writes no snapshot");
    assert!(!room.needs_flush().unwrap());
    room.handle_frame(alice, &publish_frame(json!(1), None), 10_000);
    room.take_outgoing();
    assert!(room.needs_flush().unwrap());
    room.note_change(10_000).unwrap();
    // Not idle yet: check again when it would be (IDLE_SNAPSHOT_MS after the event).
    let check = room.flush_plan(15_000, None).unwrap();
    assert!(check.plan.is_none());
    assert_eq!(check.next_ms, Some(40_000));
    let plan = plan_at(&mut room, 40_000);
    assert_eq!(plan.snapshot.as_ref().map(|s| s.seq), Some(1));
    assert_eq!(plan.read_model, None, "nobody reads the room: no KV");
    room.flushed(&plan, ALL_WRITTEN).unwrap();
    assert!(!room.needs_flush().unwrap());
    // A presence change of a known room moves the index row alone.
    room.handle_frame(alice, &json_frame(json!({"type": "presence_set", "data": {"typing": true}})), 41_000);
    let bob = join(&mut room);
    let plan = plan_at(&mut room, 50_000);
    assert!(plan.index && plan.snapshot.is_none(), "{plan:?}");
    room.flushed(&plan, ALL_WRITTEN).unwrap();
    assert!(
        room.flush_plan(60_000, None).unwrap().plan.is_none(),
        "identical index rows are not written again"
    );
    // A busy room gets a snapshot once its first unsaved change waited SNAPSHOT_INTERVAL_MS.
    for n in 0..30u64 {
        let at = 100_000 + n * 10_000;
        room.handle_frame(bob, &publish_frame(json!(n), None), at);
        room.take_outgoing();
        room.note_change(at).unwrap();
        let check = room.flush_plan(at, None).unwrap();
        if at < 400_000 {
            assert!(check.plan.is_none(), "at {at}");
        } else {
            assert!(check.plan.is_some_and(|plan| plan.snapshot.is_some()), "at {at}");
        }
    }
}

#[test]
fn rooms_with_readers_write_kv_and_a_failed_write_keeps_the_change() {
    let limits = Limits { read_model_min_reads: 3, ..Limits::default() };
    let mut room = room_with(limits);
    room.remember_names("acme", "lobby").unwrap();
    let alice = join(&mut room);
    room.handle_frame(alice, &publish_frame(json!(1), None), 1_000);
    room.take_outgoing();
    assert_eq!(room.mark_read(2_000).unwrap(), None);
    assert_eq!(room.mark_read(2_001).unwrap(), None);
    assert_eq!(room.mark_read(2_002).unwrap(), Some(2_002), "read-hot: write the read model now");
    let plan = plan_at(&mut room, 2_002);
    assert!(matches!(plan.read_model, Some(ReadModelWrite::Put { ttl_s: 300, .. })));
    // KV failed: nothing is recorded and the next check writes it again.
    room.flushed(&plan, Written::default()).unwrap();
    let plan = plan_at(&mut room, 8_000);
    assert!(plan.read_model.is_some());
    room.flushed(&plan, Written { read_model: true, ..Written::default() }).unwrap();
    // A change while the KV value lives is written within READ_MODEL_INTERVAL_MS.
    room.handle_frame(alice, &publish_frame(json!(2), None), 9_000);
    room.take_outgoing();
    assert_eq!(room.note_change(9_000).unwrap(), Some(18_000));
    let plan = plan_at(&mut room, 18_000);
    assert_eq!(plan.view.seq, 2);
    assert!(matches!(plan.read_model, Some(ReadModelWrite::Put { ttl_s: 290, .. })));
}

#[test]
fn a_presence_change_during_a_flush_is_not_marked_flushed() {
    let mut room = room();
    room.remember_names("acme", "lobby").unwrap();
    let alice = join(&mut room);
    room.request_flush();
    let plan = plan_at(&mut room, 0);
    // While the flush writes, presence changes (no new seq).
    room.handle_frame(alice, &json_frame(json!({"type": "presence_set", "data": {"typing": true}})), 1);
    room.flushed(&plan, ALL_WRITTEN).unwrap();
    assert!(room.needs_flush().unwrap(), "the presence change still needs its own check");
}

#[test]
fn welcome_refreshes_spend_a_send_budget_and_then_close() {
    let limits = Limits { send_budget_bytes: 10_000, ..Limits::default() };
    let mut room = room_with(limits);
    let alice = join(&mut room);
    room.handle_frame(
        alice,
        &json_frame(json!({"type": "state_set", "key": "k", "value": "x".repeat(3_000)})),
        1,
    );
    room.take_outgoing();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        room.handle_frame(alice, &json_frame(json!({"type": "hello"})), 1);
        for outgoing in room.take_outgoing() {
            outcomes.push(match outgoing {
                Outgoing::Close { code, .. } => code,
                Outgoing::Deliver { message: ServerMessage::Welcome(_), .. } => 0,
                Outgoing::Deliver { .. } => continue,
            });
        }
    }
    // Each refresh costs about 3.4 KB of the 10 KB budget: two fit, then the room closes it.
    assert_eq!(&outcomes[..3], &[0, 0, close_code::SEND_BUDGET]);
}

#[test]
fn oversized_keys_and_seqs_are_refused_everywhere() {
    let mut room = room();
    let alice = join(&mut room);
    room.take_outgoing();
    let long_key = "k".repeat(300);
    room.handle_frame(alice, &json_frame(json!({"type": "state_delete", "key": long_key})), 1);
    room.handle_frame(alice, &json_frame(json!({"type": "hello", "resume_from": u64::MAX})), 1);
    assert_eq!(
        error_codes(&deliveries(&mut room, alice)),
        vec![ErrorCode::BadRequest, ErrorCode::BadRequest]
    );
    assert_eq!(room.seq().unwrap(), 0, "nothing was stored");
    assert!(ConnectOptions::from_query([("resume_from", "18446744073709551615")]).is_err());
}

#[test]
fn restore_outcomes_decide_whether_a_room_may_serve() {
    let mut room = room();
    assert_eq!(room.restore_from(RestoreSource::NewRoom), Ok(None));
    assert_eq!(room.restore_from(RestoreSource::Unavailable("R2 down".into())), Err("R2 down".into()));
    let mut source = self::room();
    let id = join(&mut source);
    source.handle_frame(id, &publish_frame(json!(1), None), 1);
    let snapshot = source.snapshot("acme", "lobby", 10, 1, None).unwrap();
    assert_eq!(room.restore_from(RestoreSource::Snapshot(Box::new(snapshot))), Ok(Some(1)));
    assert_eq!(room.seq().unwrap(), 1);
}

#[test]
fn snapshots_restore_into_an_empty_room_and_over_a_newer_one() {
    let mut room = room();
    let alice = join(&mut room);
    room.handle_frame(alice, &json_frame(json!({"type": "state_set", "key": "k", "value": "v1"})), 1);
    for n in 0..5 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    let snapshot = room.snapshot("acme", "lobby", 3, 99, None).unwrap();
    assert_eq!(snapshot.seq, 6);
    assert_eq!(snapshot.events.iter().map(|e| e.event.seq).collect::<Vec<_>>(), vec![4, 5, 6]);
    let bytes = snapshot.encode().unwrap().0;

    // An empty room (its storage wiped) becomes the snapshot.
    let mut fresh = Room::open(MemorySql::new(), Limits::default(), 3).unwrap();
    assert!(fresh.is_empty().unwrap());
    fresh.restore_snapshot(Snapshot::decode(&bytes).unwrap()).unwrap();
    assert_eq!(fresh.seq().unwrap(), 6);
    assert_eq!(fresh.view("acme", "lobby", 0).unwrap().state.get("k").map(Body::as_str), Some(r#""v1""#));
    assert!(fresh.connect(options(), 0).unwrap().id > alice, "connection ids are not reused");

    // Restoring an older snapshot over a newer room keeps the seq counting upwards.
    room.handle_frame(alice, &json_frame(json!({"type": "state_set", "key": "k", "value": "v2"})), 1);
    room.handle_frame(alice, &publish_frame(json!("later"), None), 1);
    room.take_outgoing();
    room.restore_snapshot(snapshot).unwrap();
    let frames = deliveries(&mut room, alice);
    assert!(matches!(&frames[..], [ServerMessage::Welcome(w), ServerMessage::Gap(g)]
        if w.seq == 8 && w.state[0].value.as_str() == r#""v1""# && g.seq == 8));
    room.handle_frame(alice, &publish_frame(json!("after restore"), None), 1);
    assert_eq!(event_seqs(&deliveries(&mut room, alice)), vec![9]);
}

#[test]
fn epochs_survive_reopening_and_change_with_a_restore() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 7).unwrap();
    let epoch = room.epoch().unwrap();
    assert_eq!(epoch.len(), 16);
    let alice = room.connect(options(), 0).unwrap().id;
    for n in 0..3 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 1);
    }
    let snapshot = room.snapshot("acme", "lobby", 10, 1, None).unwrap();
    drop(room);
    // Another instance over the same storage (another entropy) keeps the epoch.
    let mut reopened = Room::open(sql, Limits::default(), 8).unwrap();
    assert_eq!(reopened.epoch().unwrap(), epoch);
    // A resume in the same epoch replays; one naming another epoch gets a gap.
    let same = ConnectOptions { resume_from: Some(1), resume_epoch: Some(epoch.clone()), ..options() };
    let id = reopened.connect(same, 2).unwrap().id;
    assert_eq!(event_seqs(&deliveries(&mut reopened, id)), vec![2, 3]);
    let other = ConnectOptions { resume_from: Some(3), resume_epoch: Some("elsewhere".into()), ..options() };
    let id = reopened.connect(other, 2).unwrap().id;
    let frames = deliveries(&mut reopened, id);
    assert!(
        matches!(&frames[..], [ServerMessage::Welcome(w), ServerMessage::Gap(g)]
        if w.epoch == epoch && g.resume_from == 3 && g.seq == 3),
        "{frames:?}"
    );
    // A restore re-creates history: a new epoch, announced in the welcome that goes with the gap.
    reopened.restore_snapshot(snapshot).unwrap();
    let new_epoch = reopened.epoch().unwrap();
    assert_ne!(new_epoch, epoch);
    let frames = deliveries(&mut reopened, id);
    assert!(
        matches!(&frames[..], [ServerMessage::Welcome(w), ServerMessage::Gap(_)] if w.epoch == new_epoch)
    );
    assert_eq!(reopened.history(0, 10).unwrap().epoch, new_epoch);
}

#[test]
fn metrics_count_a_known_load_and_survive_a_reopen() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    room.remember_names("acme", "lobby").unwrap();
    let clients: Vec<u64> = (0..3).map(|_| room.connect(options(), 0).unwrap().id).collect();
    room.take_outgoing();
    for n in 0..100 {
        let op_id = Uuid::from_u128(n);
        room.handle_frame(clients[n as usize % 3], &publish_frame(json!(n), Some(op_id)), 1);
        room.take_outgoing();
    }
    room.handle_frame(clients[0], &WireFrame::Text("nope".into()), 1);
    room.take_outgoing();
    let metrics = room.metrics();
    assert_eq!((metrics.events, metrics.deliveries, metrics.acks), (100, 300, 100));
    assert_eq!((metrics.frames_in, metrics.connections_peak), (101, 3));
    assert_eq!(metrics.refusals.get("malformed_frame"), Some(&1));
    assert!(metrics.rows_written >= 100, "each event is a row: {}", metrics.rows_written);
    room.request_flush();
    let plan = plan_at(&mut room, 2);
    assert_eq!((plan.since.events, plan.totals.events), (100, 100));
    room.flushed(&plan, ALL_WRITTEN).unwrap();
    room.handle_frame(clients[0], &publish_frame(json!("one more"), None), 3);
    room.request_flush();
    let plan = plan_at(&mut room, 4);
    assert_eq!((plan.since.events, plan.totals.events), (1, 101), "the next flush has only what is new");
    drop(room);
    let reopened = Room::open(sql, Limits::default(), 2).unwrap();
    assert!(reopened.metrics().events >= 100, "saved metrics come back after an eviction");
}

#[test]
fn operators_can_close_one_connection_or_all() {
    let mut room = room();
    let (alice, bob) = (join(&mut room), join(&mut room));
    room.take_outgoing();
    assert!(room.kick(alice));
    assert!(!room.kick(999));
    assert_eq!(room.close_all(), 2);
    let closes: Vec<(u64, u16)> = room
        .take_outgoing()
        .into_iter()
        .filter_map(|o| if let Outgoing::Close { to, code, .. } = o { Some((to, code)) } else { None })
        .collect();
    assert_eq!(
        closes,
        vec![(alice, close_code::KICKED), (alice, close_code::ROOM_CLOSED), (bob, close_code::ROOM_CLOSED)]
    );
}

#[test]
fn export_hands_out_filtered_batches_and_moves_only_when_taken() {
    use crate::export::{ExportFilter, ExportKind};
    let limits = Limits { history_max_events: 10, ..Limits::default() };
    let mut room = room_with(limits);
    room.remember_names("acme", "lobby").unwrap();
    let alice = join(&mut room);
    room.handle_frame(alice, &publish_frame(json!("before export"), None), 1);
    assert!(!room.needs_export().unwrap(), "no endpoint, nothing to export");
    let filter = ExportFilter(
        [ExportKind::Message, ExportKind::PresenceJoin, ExportKind::RoomVacated].into_iter().collect(),
    );
    room.set_export_filter(filter).unwrap();
    for n in 0..70 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 2);
    }
    room.handle_frame(alice, &json_frame(json!({"type": "state_set", "key": "k", "value": 1})), 2);
    let bob = join(&mut room);
    room.disconnect(bob);
    room.disconnect(alice);
    let mut exported = Vec::new();
    while let Some(plan) = room.export_plan().unwrap() {
        // Not taken: the same batch comes again.
        assert_eq!(room.export_plan().unwrap().unwrap().batch, plan.batch);
        exported.extend(plan.batch.events.iter().map(|e| (e.kind, e.seq, e.id.clone())));
        room.exported(&plan).unwrap();
    }
    let seqs: Vec<u64> = exported.iter().filter_map(|(_, seq, _)| *seq).collect();
    assert_eq!(seqs, (2..=71).collect::<Vec<_>>(), "every message after export began, once, in order");
    let kinds: Vec<ExportKind> = exported.iter().filter(|(_, seq, _)| seq.is_none()).map(|e| e.0).collect();
    assert_eq!(kinds, vec![ExportKind::PresenceJoin, ExportKind::RoomVacated], "state sets filtered out");
    let ids: std::collections::BTreeSet<_> = exported.iter().map(|e| e.2.clone()).collect();
    assert_eq!(ids.len(), exported.len(), "ids are unique");
    // History kept every unexported event despite HISTORY_MAX_EVENTS=10 (trimming waits).
    assert!(!room.needs_export().unwrap());
}

#[test]
fn the_snapshot_interval_counts_from_the_first_unsaved_event_across_wake_ups() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let limits = Limits::default();
    let mut room = Room::open(sql.clone(), limits.clone(), 1).unwrap();
    room.remember_names("acme", "lobby").unwrap();
    let alice = room.connect(options(), 0).unwrap();
    // An event every 60 s keeps the room from idling (IDLE_SNAPSHOT_MS 120 s), and each one
    // comes to a new instance, as after hibernation.
    for n in 0..6u64 {
        let at = 10_000 + n * 60_000;
        let mut woken = Room::open(sql.clone(), limits.clone(), n + 2).unwrap();
        woken.restore_connection(alice.clone(), at);
        woken.handle_frame(alice.id, &publish_frame(json!(n), None), at);
        woken.take_outgoing();
        woken.note_change(at).unwrap();
        let check = woken.flush_plan(at + 1_000, None).unwrap();
        // SNAPSHOT_INTERVAL_MS (300 s) after the first event at 10 s.
        assert_eq!(check.plan.is_some(), at + 1_000 >= 310_000, "at {at}");
        room = woken;
    }
    assert_eq!(room.store().last_seq().unwrap(), 6);
}

#[test]
fn a_snapshot_built_on_the_last_one_equals_one_read_whole() {
    let limits = Limits { history_max_events: 12, snapshot_max_events: 7, ..Limits::default() };
    let mut room = room_with(limits);
    room.remember_names("acme", "lobby").unwrap();
    let alice = join(&mut room);
    let mut at = 1_000;
    let mut last: Option<Snapshot> = None;
    // Rounds of 1 to 9 events: the base holds fewer, as many, or more than the snapshot keeps,
    // and history trimming (12 events) cuts into what the base holds.
    for round in [1u64, 3, 9, 2, 5, 7, 1, 4] {
        for n in 0..round {
            room.handle_frame(alice, &publish_frame(json!({ "round": round, "n": n }), None), at);
            room.take_outgoing();
            at += 10;
        }
        let whole = room.snapshot("acme", "lobby", 7, at, None).unwrap();
        if let Some(base) = last.clone() {
            assert_eq!(room.snapshot_base_seq().unwrap(), Some(base.seq));
            let built = room.snapshot("acme", "lobby", 7, at, Some(base)).unwrap();
            assert_eq!(built, whole, "after a round of {round}");
        }
        room.request_flush();
        let plan = plan_at(&mut room, at);
        let taken = plan.snapshot.clone().expect("a requested snapshot");
        assert_eq!(taken, whole);
        room.flushed(&plan, ALL_WRITTEN).unwrap();
        last = Some(taken);
    }
    // A base that is not the last snapshot of this epoch is ignored.
    let stale = last.clone().map(|mut s| {
        s.seq -= 1;
        s.events.clear();
        s
    });
    room.handle_frame(alice, &publish_frame(json!("after"), None), at);
    room.take_outgoing();
    let whole = room.snapshot("acme", "lobby", 7, at, None).unwrap();
    assert_eq!(room.snapshot("acme", "lobby", 7, at, stale).unwrap(), whole);
    // After a restore (a new epoch) the old snapshots are no base.
    room.restore_snapshot(whole.clone()).unwrap();
    assert_eq!(room.snapshot_base_seq().unwrap(), None);
}

#[test]
fn counts_carried_by_a_socket_survive_a_wake_up_without_a_save() {
    let sql = std::rc::Rc::new(MemorySql::new());
    let mut room = Room::open(sql.clone(), Limits::default(), 1).unwrap();
    let alice = room.connect(options(), 0).unwrap();
    let bob = room.connect(options(), 0).unwrap();
    for n in 0..5 {
        room.handle_frame(alice.id, &publish_frame(json!(n), None), 1_000 + n);
        room.take_outgoing();
    }
    let carried = room.carrier_attachment(alice.id).unwrap();
    let counted = room.metrics();
    assert_eq!((counted.frames_in, counted.events), (5, 5));
    drop(room);
    // Hibernation: nothing was saved, and only alice's socket carries the counts.
    let mut woken = Room::open(sql, Limits::default(), 2).unwrap();
    woken.restore_connection(carried, 2_000);
    woken.restore_connection(bob.clone(), 2_000);
    let restored = woken.metrics();
    assert_eq!((restored.frames_in, restored.events, restored.deliveries), (5, 5, counted.deliveries));
    assert!(restored.rows_written >= counted.rows_written, "rows carry too");
    assert!(woken.connection(alice.id).unwrap().counts.is_empty(), "the room keeps no stale copy");
    // An older copy on another socket never takes counts back.
    let mut older = bob;
    older.counts = vec![1, 1];
    woken.restore_connection(older, 2_000);
    assert_eq!(woken.metrics().frames_in, 5);
}

#[test]
fn a_full_export_batch_is_noticed_without_reading_storage() {
    use crate::export::{ExportFilter, ExportKind};
    let mut room = room();
    room.remember_names("acme", "lobby").unwrap();
    let alice = join(&mut room);
    room.set_export_filter(ExportFilter([ExportKind::Message].into_iter().collect())).unwrap();
    for n in 0..99 {
        room.handle_frame(alice, &publish_frame(json!(n), None), 2);
    }
    room.take_outgoing();
    assert!(!room.export_batch_full().unwrap(), "99 events: the alarm takes them");
    room.handle_frame(alice, &publish_frame(json!(99), None), 2);
    room.take_outgoing();
    let read_before = room.store().counts().rows_read;
    assert!(room.export_batch_full().unwrap(), "a full batch leaves from the send path");
    assert_eq!(room.store().counts().rows_read, read_before, "the cursor is kept in memory");
    let plan = room.export_plan().unwrap().unwrap();
    assert_eq!(plan.batch.events.len(), 100);
    room.exported(&plan).unwrap();
    assert!(!room.export_batch_full().unwrap());
}
