//! Router: tokens, per-room rights, tenant isolation, REST readers (KV first), the publish API,
//! rate limits, body limits and CORS — against a real `wrangler dev` in token mode.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeroom_auth::{sign, Claims, RoomGrant};
use edgeroom_protocol::{Body, ErrorCode, PresenceSet, Publish, Right, ServerMessage};
use edgeroom_tests::{Client, Server};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "test-admin-key";
const SECRETS: &str = r#"{"acme":"acme-secret-0123456789","globex":"globex-secret-0123456789"}"#;

async fn token_server() -> Server {
    Server::start_with_vars(&[
        ("AUTH_MODE", "token"),
        ("TENANT_SECRETS", SECRETS),
        ("ADMIN_KEY", ADMIN_KEY),
        ("FLUSH_INTERVAL_MS", "1000"),
    ])
    .await
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(tenant: &str, room: &str, rights: &[Right]) -> Claims {
    Claims {
        sub: format!("user-of-{tenant}"),
        tenant: tenant.into(),
        rooms: vec![RoomGrant { room: room.into(), rights: rights.to_vec() }],
        exp: now() + 600,
        nbf: None,
    }
}

fn token(tenant: &str, room: &str, rights: &[Right]) -> String {
    sign(&claims(tenant, room, rights), &format!("{tenant}-secret-0123456789")).unwrap()
}

const ALL: &[Right] = &[Right::Read, Right::Write, Right::Presence];

async fn get(server: &Server, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(server.http_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn post(server: &Server, path: &str, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(server.http_url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("<no JSON error body>").to_owned())
}

fn ws(server: &Server, tenant: &str, room: &str, token: &str) -> String {
    server.ws_url(&format!("/v1/t/{tenant}/rooms/{room}/ws?token={token}"))
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let server = token_server().await;
    let path = "/v1/t/acme/rooms/lobby";
    assert_eq!(error_of(get(&server, path, None).await).await, (401, "unauthorized".into()));
    let forged = sign(&claims("acme", "*", ALL), "guessed-secret").unwrap();
    let mut expired = claims("acme", "*", ALL);
    expired.exp = now() - 1;
    let mut early = claims("acme", "*", ALL);
    early.nbf = Some(now() + 3600);
    let unknown_tenant = sign(&claims("initech", "*", ALL), "x").unwrap();
    for bad in [
        forged,
        sign(&expired, "acme-secret-0123456789").unwrap(),
        sign(&early, "acme-secret-0123456789").unwrap(),
        unknown_tenant,
        "not.a.token".to_owned(),
    ] {
        assert_eq!(
            error_of(get(&server, path, Some(&bad)).await).await,
            (401, "unauthorized".into()),
            "{bad}"
        );
        assert_eq!(Client::try_connect(&ws(&server, "acme", "lobby", &bad)).await.err(), Some(401));
    }
    // A valid token for another tenant is forbidden, not unauthorized.
    let globex = token("globex", "*", ALL);
    assert_eq!(error_of(get(&server, path, Some(&globex)).await).await, (403, "forbidden".into()));
    let good = token("acme", "*", ALL);
    assert_eq!(get(&server, path, Some(&good)).await.status(), 200);
    let mut client = Client::connect(&ws(&server, "acme", "lobby", &good)).await;
    assert_eq!(client.welcome().await.seq, 0);
}

#[tokio::test]
async fn rights_decide_what_a_token_may_do() {
    let server = token_server().await;
    let writer_token = token("acme", "lobby", ALL);
    let reader_token = token("acme", "lobby", &[Right::Read]);
    let mut writer = Client::connect(&ws(&server, "acme", "lobby", &writer_token)).await;
    let writer_id = writer.welcome().await.connection_id;
    writer.send_text(&Frames::presence("here")).await;

    // Read only: may watch, may not publish or set presence, sees no presence.
    let mut reader = Client::connect(&ws(&server, "acme", "lobby", &reader_token)).await;
    let welcome = reader.welcome().await;
    assert!(welcome.members.is_empty(), "no presence right: no members");
    reader.send_text(&Frames::publish("nope")).await;
    reader.send_text(&Frames::presence("nope")).await;
    for _ in 0..2 {
        match reader.next_control().await {
            ServerMessage::Error(e) => assert_eq!(e.code, ErrorCode::Forbidden),
            other => panic!("expected forbidden, got {other:?}"),
        }
    }
    let response = post(&server, "/v1/t/acme/rooms/lobby/messages", &reader_token, json!({"body": 1})).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    assert_eq!(get(&server, "/v1/t/acme/rooms/lobby/history", Some(&reader_token)).await.status(), 200);

    writer.send_text(&Frames::publish("hello")).await;
    assert_eq!(reader.next_event().await.seq, 1);
    assert!(reader.is_quiet_for(Duration::from_millis(300)).await, "nothing else, no presence");
    // The writer's view of members does not include the hidden reader.
    let view: Value = get(&server, "/v1/t/acme/rooms/lobby?consistency=strong", Some(&writer_token))
        .await
        .json()
        .await
        .unwrap();
    let members: Vec<u64> =
        view["members"].as_array().unwrap().iter().map(|m| m["connection_id"].as_u64().unwrap()).collect();
    assert_eq!(members, vec![writer_id]);

    // Counters use the same grants: a read-only token may watch a counter, not change it.
    let counter_ws = server.ws_url(&format!("/v1/t/acme/counters/lobby/ws?token={reader_token}"));
    let mut watcher = Client::connect(&counter_ws).await;
    assert!(matches!(watcher.next_message().await, ServerMessage::Counter(_)));
    let add = edgeroom_protocol::CounterAdd { op_id: uuid::Uuid::new_v4(), delta: 1 };
    watcher.send_text(&edgeroom_protocol::ClientMessage::from(add).to_json()).await;
    assert!(
        matches!(watcher.next_message().await, ServerMessage::Error(e) if e.code == ErrorCode::Forbidden)
    );
    let body = json!({"delta": 1, "op_id": uuid::Uuid::new_v4()});
    let response = post(&server, "/v1/t/acme/counters/lobby/add", &reader_token, body.clone()).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    let response = post(&server, "/v1/t/acme/counters/lobby/add", &writer_token, body).await;
    assert_eq!(response.status(), 200);

    // A token without a grant for this room gets nothing.
    let elsewhere = token("acme", "kitchen", ALL);
    assert_eq!(Client::try_connect(&ws(&server, "acme", "lobby", &elsewhere)).await.err(), Some(403));
    // Prefix grants.
    let teams = token("acme", "team-*", &[Right::Read]);
    assert_eq!(get(&server, "/v1/t/acme/rooms/team-red", Some(&teams)).await.status(), 200);
    assert_eq!(get(&server, "/v1/t/acme/rooms/teal", Some(&teams)).await.status(), 403);
}

/// JSON frames for the tests above, built from the protocol types.
struct Frames;

impl Frames {
    fn publish(text: &str) -> String {
        edgeroom_protocol::ClientMessage::from(Publish {
            op_id: None,
            body: Body::from_value(text).unwrap(),
            topic: None,
        })
        .to_json()
    }

    fn presence(text: &str) -> String {
        edgeroom_protocol::ClientMessage::from(PresenceSet { data: Body::from_value(text).unwrap() })
            .to_json()
    }
}

#[tokio::test]
async fn tenant_a_can_never_reach_tenant_b() {
    let server = token_server().await;
    let acme = token("acme", "*", &[Right::Read, Right::Write, Right::Presence, Right::Admin]);
    let globex = token("globex", "*", ALL);
    // Same room name in both tenants; each gets its own message.
    for (tenant, token) in [("acme", &acme), ("globex", &globex)] {
        let response =
            post(&server, &format!("/v1/t/{tenant}/rooms/lobby/messages"), token, json!({"body": tenant}))
                .await;
        assert_eq!(response.json::<Value>().await.unwrap()["seq"], 1);
    }
    // Every route of tenant B with tenant A's token.
    for path in [
        "/v1/t/globex/rooms/lobby",
        "/v1/t/globex/rooms/lobby/history",
        "/v1/t/globex/rooms/lobby?consistency=strong",
    ] {
        assert_eq!(
            error_of(get(&server, path, Some(&acme)).await).await,
            (403, "forbidden".into()),
            "{path}"
        );
    }
    let response =
        post(&server, "/v1/t/globex/rooms/lobby/messages", &acme, json!({"body": "intrusion"})).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    assert_eq!(Client::try_connect(&ws(&server, "globex", "lobby", &acme)).await.err(), Some(403));
    // The admin API takes no tenant token.
    let response = get(&server, "/v1/admin/t/globex/rooms/lobby", Some(&acme)).await;
    assert_eq!(error_of(response).await, (401, "unauthorized".into()));
    let response = post(&server, "/v1/admin/t/globex/tokens", &acme, json!({"sub": "x", "rooms": []})).await;
    assert_eq!(error_of(response).await, (401, "unauthorized".into()));

    // Nothing mixed: each tenant's history holds only its own event.
    for (tenant, token) in [("acme", &acme), ("globex", &globex)] {
        let page: Value = get(&server, &format!("/v1/t/{tenant}/rooms/lobby/history"), Some(token))
            .await
            .json()
            .await
            .unwrap();
        let bodies: Vec<Value> =
            page["events"].as_array().unwrap().iter().map(|e| e["body"].clone()).collect();
        assert_eq!(bodies, vec![json!(tenant)]);
    }
}

#[tokio::test]
async fn state_reads_use_kv_with_etags_and_fall_back_to_the_room() {
    let server = token_server().await;
    let token = token("acme", "*", ALL);
    let path = "/v1/t/acme/rooms/readers";
    // KV is empty: the room answers.
    let first = get(&server, path, Some(&token)).await;
    assert_eq!(first.headers()["x-edgeroom-source"], "object");
    assert_eq!(first.headers()["etag"], "\"0\"");
    let mut writer = Client::connect(&ws(&server, "acme", "readers", &token)).await;
    writer.welcome().await;
    let set = json!({"type": "state_set", "key": "title", "value": "Planning"});
    writer.send_json(set).await;
    assert_eq!(writer.next_event().await.seq, 1);

    // Within a flush interval the read model arrives in KV.
    let mut from_kv = None;
    for _ in 0..50 {
        let response = get(&server, path, Some(&token)).await;
        if response.headers()["x-edgeroom-source"] == "kv" && response.headers()["etag"] == "\"1\"" {
            from_kv = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let from_kv = from_kv.expect("the KV read model was never published");
    assert_eq!(from_kv.headers()["x-edgeroom-seq"], "1");
    assert!(from_kv.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(from_kv.headers()["x-edgeroom-age-ms"].to_str().unwrap().parse::<u64>().is_ok());
    let view: Value = from_kv.json().await.unwrap();
    assert_eq!(view["state"]["title"], "Planning");

    let not_modified = reqwest::Client::new()
        .get(server.http_url(path))
        .bearer_auth(&token)
        .header("If-None-Match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    let strong = get(&server, &format!("{path}?consistency=strong"), Some(&token)).await;
    assert_eq!(strong.headers()["x-edgeroom-source"], "object");
    let bad = get(&server, &format!("{path}?consistency=sometimes"), Some(&token)).await;
    assert_eq!(error_of(bad).await, (400, "bad_request".into()));
}

#[tokio::test]
async fn rest_publishes_reach_websockets_once() {
    let server = token_server().await;
    let token = token("acme", "*", ALL);
    let mut client = Client::connect(&ws(&server, "acme", "news", &token)).await;
    client.welcome().await;
    let key = "3c7a4a7e-6f0f-4b0a-9a57-8f2b1f0d9c11";
    let mut seqs = Vec::new();
    for _ in 0..2 {
        let response = reqwest::Client::new()
            .post(server.http_url("/v1/t/acme/rooms/news/messages"))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"body": {"headline": "edgeroom ships"}, "topic": "news"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let result: Value = response.json().await.unwrap();
        assert_eq!(result["op_id"], key);
        seqs.push(result["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, vec![1, 1], "a retried publish keeps its seq");
    let event = client.next_event().await;
    assert_eq!((event.seq, event.sender, event.topic.as_deref()), (1, None, Some("news")));
    assert_eq!(event.body.parse::<Value>().unwrap(), json!({"headline": "edgeroom ships"}));
    assert!(client.is_quiet_for(Duration::from_millis(300)).await, "applied once");

    // Bad bodies.
    let path = "/v1/t/acme/rooms/news/messages";
    let no_body = post(&server, path, &token, json!({"text": "no body field"})).await;
    assert_eq!(error_of(no_body).await, (400, "bad_request".into()));
    let huge = post(&server, path, &token, json!({"body": "x".repeat(70_000)})).await;
    assert_eq!(error_of(huge).await, (413, "too_large".into()));
    let not_json = reqwest::Client::new()
        .post(server.http_url(path))
        .bearer_auth(&token)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(not_json).await, (400, "bad_request".into()));
    let wrong_method =
        reqwest::Client::new().put(server.http_url(path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_of(wrong_method).await, (405, "method_not_allowed".into()));
}

#[tokio::test]
async fn a_burst_over_the_token_limit_gets_429() {
    let server = token_server().await;
    let token = token("acme", "*", ALL);
    let client = reqwest::Client::new();
    // Bursts of 20 until the limiter refuses one (TOKEN_RATE_LIMITER: 300 per 10 s), at most 3,000.
    let mut ok = 0;
    let mut refused = None;
    while refused.is_none() && ok < 3000 {
        let requests = (0..20)
            .map(|_| client.get(server.http_url("/v1/t/acme/rooms/hot/history")).bearer_auth(&token).send());
        for response in futures_util::future::join_all(requests).await {
            let response = response.unwrap();
            match response.status().as_u16() {
                200 => ok += 1,
                429 => refused = Some(response),
                other => panic!("unexpected status {other}"),
            }
        }
    }
    let refused = refused.expect("a burst over the token limit was never refused");
    assert!(ok >= 250, "the limit lets a normal rate through ({ok} before the first 429)");
    assert_eq!(error_of(refused).await, (429, "rate_limited".into()));
}

#[tokio::test]
async fn admin_api_and_cors() {
    let server = token_server().await;
    let client = reqwest::Client::new();
    let wrong = client
        .post(server.http_url("/v1/admin/t/acme/tokens"))
        .bearer_auth("guess")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(wrong).await, (401, "unauthorized".into()));
    let minted: Value = client
        .post(server.http_url("/v1/admin/t/acme/tokens"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"sub": "console", "rooms": [{"room": "*", "rights": ["read"]}], "ttl_secs": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let minted_token = minted["token"].as_str().unwrap();
    assert_eq!(get(&server, "/v1/t/acme/rooms/any", Some(minted_token)).await.status(), 200);
    let room = client
        .get(server.http_url("/v1/admin/t/acme/rooms/any"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(room.status(), 200);
    assert_eq!(room.json::<Value>().await.unwrap()["room"], "any");

    let preflight = client
        .request(reqwest::Method::OPTIONS, server.http_url("/v1/t/acme/rooms/any"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://app.example");
    assert!(preflight.headers()["access-control-allow-headers"].to_str().unwrap().contains("Authorization"));
}
