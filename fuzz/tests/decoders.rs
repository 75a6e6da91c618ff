//! Fuzz targets: the binary and JSON protocol decoders, the snapshot decoder, the token parser and
//! verifier, and the route and request URL parsers. `cargo test -p edgeroom-fuzz` runs each for
//! `EDGEROOM_FUZZ_ITERS` inputs (see `edgeroom_fuzz` and the README's "Fuzzing" section).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgeroom_auth::{sign, sign_with_key, verify, Claims, RoomGrant, SigningKey, TenantSecrets};
use edgeroom_durable::{ConnectOptions, HistoryQuery, Snapshot, StoredEvent};
use edgeroom_fuzz::{mutate, snapshot_file, Fuzz};
use edgeroom_protocol::{
    Body, ClientMessage, Event, EventKind, RequestUrl, Right, Route, ServerMessage, StateEntry,
};

const CLIENT_JSON: &[&str] = &[
    r#"{"type":"hello","resume_from":41,"epoch":"6c1f0e9a8b7d2c34","client":"my-app/1.2"}"#,
    r#"{"type":"hello"}"#,
    r#"{"type":"publish","op_id":"0b5c0f1e-3a4d-4e8a-9c43-2f6f7d1b9a10","body":{"text":"hi","n":[1,2.5,-3e2,null,true]},"topic":"chat"}"#,
    r#"{"type":"publish","body":"hello"}"#,
    r#"{"type":"state_set","op_id":"5f0e9c43-3a4d-4e8a-9c43-2f6f7d1b9a10","key":"title","value":"Planning"}"#,
    r#"{"type":"state_delete","op_id":"77aa9c43-3a4d-4e8a-9c43-2f6f7d1b9a10","key":"title"}"#,
    r#"{"type":"presence_set","data":{"name":"Ada \u00e9\n","cursor":[10,4]}}"#,
    r#"{"type":"ping","nonce":7}"#,
    r#"{"type":"counter_add","op_id":"9b1d9c43-3a4d-4e8a-9c43-2f6f7d1b9a10","delta":-3}"#,
    r#"{"type":"counter_set","op_id":"1f2e9c43-3a4d-4e8a-9c43-2f6f7d1b9a10","value":100}"#,
    r#"{"type":"counter_reset","op_id":"77aa9c43-3a4d-4e8a-9c43-2f6f7d1b9a10"}"#,
];

const SERVER_JSON: &[&str] = &[
    r#"{"type":"ack","op_id":"0b5c0f1e-3a4d-4e8a-9c43-2f6f7d1b9a10","seq":42}"#,
    r#"{"type":"counter","name":"likes","value":42,"version":17}"#,
    r#"{"type":"error","code":"rate_limited","message":"over the limit; slow down","op_id":null}"#,
    r#"{"type":"event","seq":42,"kind":"message","body":{"text":"hi"},"sender":12,"topic":"chat","key":null}"#,
    r#"{"type":"event","seq":43,"kind":"state_set","body":"Planning","sender":12,"topic":null,"key":"title"}"#,
    r#"{"type":"gap","resume_from":3,"seq":201}"#,
    r#"{"type":"pong","nonce":7}"#,
    r#"{"type":"presence","joined":[{"connection_id":13,"user":"ada","data":{"x":1}}],"left":[3],"updated":[]}"#,
];

fn client_seeds() -> Vec<ClientMessage> {
    CLIENT_JSON
        .iter()
        .map(|text| ClientMessage::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}")))
        .collect()
}

fn server_seeds() -> Vec<ServerMessage> {
    SERVER_JSON
        .iter()
        .map(|text| ServerMessage::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}")))
        .collect()
}

/// Binary frames (version byte + postcard), both directions. A frame that decodes must survive
/// a round trip unchanged.
#[test]
fn binary_frames() {
    let mut corpus: Vec<Vec<u8>> = client_seeds().iter().map(ClientMessage::to_binary).collect();
    corpus.extend(server_seeds().iter().map(ServerMessage::to_binary));
    Fuzz::from_env().run(
        "binary_frames",
        &corpus,
        |_, _| None,
        |bytes| {
            if let Ok(message) = ClientMessage::from_binary(bytes) {
                assert_eq!(ClientMessage::from_binary(&message.to_binary()).ok(), Some(message));
            }
            if let Ok(message) = ServerMessage::from_binary(bytes) {
                assert_eq!(ServerMessage::from_binary(&message.to_binary()).ok(), Some(message));
            }
        },
    );
}

/// JSON text frames, both directions. A frame that decodes must survive a JSON round trip and
/// have a binary form that decodes to the same message.
#[test]
fn json_frames() {
    let corpus: Vec<Vec<u8>> = CLIENT_JSON.iter().chain(SERVER_JSON).map(|t| t.as_bytes().to_vec()).collect();
    Fuzz::from_env().run(
        "json_frames",
        &corpus,
        |_, _| None,
        |bytes| {
            let text = String::from_utf8_lossy(bytes);
            if let Ok(message) = ClientMessage::from_json(&text) {
                assert_eq!(ClientMessage::from_json(&message.to_json()).ok().as_ref(), Some(&message));
                assert_eq!(ClientMessage::from_binary(&message.to_binary()).ok(), Some(message));
            }
            if let Ok(message) = ServerMessage::from_json(&text) {
                assert_eq!(ServerMessage::from_json(&message.to_json()).ok().as_ref(), Some(&message));
                assert_eq!(ServerMessage::from_binary(&message.to_binary()).ok(), Some(message));
            }
        },
    );
}

fn snapshot(seq: u64, events: usize) -> Snapshot {
    let body = |text: &str| Body::from_json(text).unwrap();
    Snapshot {
        tenant: "acme".into(),
        room: "lobby".into(),
        seq,
        created_ms: 1_700_000_000_000,
        state: vec![
            StateEntry { key: "title".into(), value: body(r#""Planning""#), seq: 1 },
            StateEntry { key: "doc".into(), value: body(r#"{"a":[1,{"b":null}]}"#), seq: 2 },
        ],
        events: (0..events as u64)
            .map(|i| StoredEvent {
                event: Event {
                    seq: seq - events as u64 + 1 + i,
                    kind: EventKind::Message,
                    body: body(r#"{"text":"hi"}"#),
                    sender: Some(i),
                    topic: (i % 2 == 0).then(|| "chat".to_owned()),
                    key: None,
                },
                op_id: Some(format!("op-{i}")),
                at_ms: 1_700_000_000_000 + i,
            })
            .collect(),
        sequences: vec![("connection".into(), 9), ("epoch".into(), 1)],
    }
}

/// Snapshot files: header checks, then the postcard body. Most mutations of a whole file only
/// break its checksum, so half of the inputs mutate the body and rewrap it with a correct
/// header. A snapshot that decodes must re-encode to a file that decodes the same.
#[test]
fn snapshots() {
    let mut corpus: Vec<Vec<u8>> =
        [snapshot(3, 0), snapshot(42, 3), snapshot(1000, 20)].iter().map(|s| s.encode().unwrap().0).collect();
    // The length sweep of the engine only breaks the checksum of a whole file: sweep the body of
    // the small snapshot here, rewrapped, so every length prefix in it claims 4 GiB once.
    let small = corpus[1].clone();
    let body = &small[snapshot_file::HEADER_LEN..];
    for at in 0..body.len() {
        let mut huge = body.to_vec();
        huge.splice(at..(at + 5).min(body.len()), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        corpus.push(snapshot_file::rewrap(&small, &huge));
    }
    Fuzz::from_env().run(
        "snapshots",
        &corpus,
        |rng, corpus| {
            rng.one_in(2).then(|| {
                let file = rng.pick(corpus);
                let mut body = file[snapshot_file::HEADER_LEN..].to_vec();
                mutate(rng, &mut body, &[]);
                snapshot_file::rewrap(file, &body)
            })
        },
        |bytes| {
            if let Ok(snapshot) = Snapshot::decode(bytes) {
                let (again, _) = snapshot.encode().expect("a decoded snapshot encodes");
                assert_eq!(Snapshot::decode(&again).ok(), Some(snapshot));
            }
        },
    );
}

const NOW: u64 = 1_800_000_000;

fn claims(rooms: usize) -> Claims {
    Claims {
        sub: "ada".into(),
        tenant: "acme".into(),
        rooms: (0..rooms)
            .map(|i| RoomGrant { room: format!("room-{i}*"), rights: vec![Right::Read, Right::Write] })
            .collect(),
        exp: NOW + 60,
        nbf: Some(NOW - 60),
    }
}

fn secrets() -> TenantSecrets {
    TenantSecrets::from_json(
        r#"{"acme":[{"kid":"new","secret":"new-secret-0123456789"},{"kid":"old","secret":"old-secret-0123456789"}],"globex":"globex-secret-0123456789"}"#,
    )
    .unwrap()
}

/// Tokens: splitting, base64url, header and claims JSON, algorithm, signature, times. Half of
/// the inputs mutate the decoded header or claims JSON and re-encode it (and re-sign it with
/// the right key half of those times), so the JSON parsers behind base64 are reached.
#[test]
fn tokens() {
    let new = SigningKey { kid: Some("new".into()), secret: "new-secret-0123456789".into() };
    let corpus: Vec<Vec<u8>> = [
        sign_with_key(&claims(1), &new).unwrap(),
        sign_with_key(
            &claims(3),
            &SigningKey { kid: Some("old".into()), secret: "old-secret-0123456789".into() },
        )
        .unwrap(),
        sign(&claims(0), "new-secret-0123456789").unwrap(),
        "eyJhbGciOiJub25lIn0.e30.".to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    let secrets = secrets();
    Fuzz::from_env().run(
        "tokens",
        &corpus,
        |rng, corpus| {
            if !rng.one_in(2) {
                return None;
            }
            let token = String::from_utf8_lossy(rng.pick(corpus).as_slice()).into_owned();
            let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
            let which = rng.below(2.min(parts.len()));
            let mut json = URL_SAFE_NO_PAD.decode(&parts[which]).unwrap_or_default();
            mutate(rng, &mut json, &[]);
            parts[which] = URL_SAFE_NO_PAD.encode(&json);
            if rng.one_in(2) && parts.len() == 3 {
                parts[2] = sign_parts(&parts[0], &parts[1], "new-secret-0123456789");
            }
            Some(parts.join(".").into_bytes())
        },
        |bytes| {
            let token = String::from_utf8_lossy(bytes);
            if let Ok(claims) = verify(&token, &secrets, NOW) {
                assert_eq!(claims.tenant, "acme");
                assert!(NOW < claims.exp && claims.nbf.is_none_or(|nbf| nbf <= NOW));
            }
            let _ = TenantSecrets::from_json(&token);
        },
    );
}

/// HS256 over `header.claims`, as a token's third part.
fn sign_parts(header: &str, claims: &str, secret: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{header}.{claims}").as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Route paths and request URLs, with the query parsers of the socket and history routes. A
/// path that parses must parse again from the path the route builds.
#[test]
fn routes() {
    let corpus: Vec<Vec<u8>> = [
        "/healthz",
        "/v1/t/acme/rooms/lobby/ws",
        "/v1/t/acme/rooms/lobby",
        "/v1/t/acme/rooms/lobby/history",
        "/v1/t/acme/rooms/lobby/messages",
        "/v1/t/acme/counters/likes/add",
        "/v1/admin/t/acme/tokens",
        "/v1/admin/t/acme/rooms/lobby/snapshots",
        "http://127.0.0.1:8787/v1/t/acme/rooms/lobby/ws?format=binary&resume_from=41&handshake=hello&epoch=6c1f",
        "https://edgeroom.example.com/v1/t/acme/rooms/lobby/history?after=10&limit=50",
        "http://[::1]:8787/v1/t/a-b_c/counters/x.y/ws?format=json&token=a%2Eb.c",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    Fuzz::from_env().run(
        "routes",
        &corpus,
        |_, _| None,
        |bytes| {
            let text = String::from_utf8_lossy(bytes);
            if let Ok(route) = Route::parse(&text) {
                assert_eq!(Route::parse(&route.path()).as_ref(), Ok(&route), "{text}");
            }
            let url = RequestUrl::parse(text.as_ref());
            let _ = (url.host_str(), url.query_param("token"));
            let _ = Route::parse(url.path());
            let _ = ConnectOptions::from_query(url.query_pairs());
            let _ = HistoryQuery::from_query(url.query_pairs());
        },
    );
}
