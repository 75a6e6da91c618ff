//! Authentication promises against a real `wrangler dev`: dev mode cannot leak into a deploy,
//! a 401 never tells whether a tenant exists, and signing keys rotate without logging anyone out.

use std::time::{SystemTime, UNIX_EPOCH};

use edgeroom_auth::{sign, sign_with_key, Claims, RoomGrant, SigningKey};
use edgeroom_protocol::Right;
use edgeroom_tests::Server;
use serde_json::{json, Value};

const ADMIN_KEY: &str = "auth-admin-key";

fn claims(tenant: &str) -> Claims {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    Claims {
        sub: "ada".into(),
        tenant: tenant.into(),
        rooms: vec![RoomGrant { room: "*".into(), rights: vec![Right::Read, Right::Write] }],
        exp: now + 600,
        nbf: None,
    }
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &Server, token: Option<&str>, host: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(server.http_url("/v1/t/acme/rooms/lobby"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    status_and_body(request.send().await.unwrap()).await
}

#[tokio::test]
async fn dev_mode_is_opt_in_and_only_for_loopback_hosts() {
    // No AUTH_MODE at all (what a plain deploy of wrangler.toml gets): tokens are required.
    let deployed = Server::start_with_vars(&[("AUTH_MODE", "")]).await;
    assert_eq!(get(&deployed, None, None).await.0, 401);
    deployed.stop();

    // Dev mode, as scripts/dev.sh and the tests set it: anonymous on loopback only.
    let local = Server::start().await;
    assert_eq!(get(&local, None, None).await.0, 200);
    assert_eq!(get(&local, None, Some("localhost")).await.0, 200);
    let (status, body) = get(&local, None, Some("edgeroom.example.com")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{body}");
}

#[tokio::test]
async fn unknown_tenants_and_bad_signatures_get_the_same_401() {
    let secrets = r#"{"acme":"acme-secret-0123456789"}"#;
    let server = Server::start_with_vars(&[("AUTH_MODE", "token"), ("TENANT_SECRETS", secrets)]).await;
    let forged = sign(&claims("acme"), "guessed-secret-0123456789").unwrap();
    let unknown = sign(&claims("initech"), "initech-secret-0123456789").unwrap();
    let (forged_status, forged_body) = get(&server, Some(&forged), None).await;
    let (unknown_status, unknown_body) = get(&server, Some(&unknown), None).await;
    assert_eq!(forged_status, 401);
    assert_eq!(unknown_status, 401);
    assert_eq!(forged_body, unknown_body, "nothing tells an unknown tenant from a bad signature");
    assert!(!unknown_body.to_string().contains("initech"));
}

#[tokio::test]
async fn signing_keys_rotate_without_logging_anyone_out() {
    let old = SigningKey { kid: Some("2026-10".into()), secret: "old-secret-0123456789".into() };
    let before = json!({"acme": [{"kid": "2026-10", "secret": old.secret}]}).to_string();
    let server = Server::start_with_vars(&[("AUTH_MODE", "token"), ("TENANT_SECRETS", &before)]).await;
    let old_token = sign_with_key(&claims("acme"), &old).unwrap();
    assert_eq!(get(&server, Some(&old_token), None).await.0, 200);
    server.stop();

    // Rotation: the new key signs, the old one still verifies.
    let during = json!({"acme": [
        {"kid": "2026-11", "secret": "new-secret-0123456789"},
        {"kid": "2026-10", "secret": old.secret},
    ]})
    .to_string();
    let vars = [("AUTH_MODE", "token"), ("TENANT_SECRETS", during.as_str()), ("ADMIN_KEY", ADMIN_KEY)];
    let server = Server::start_with_vars(&vars).await;
    assert_eq!(get(&server, Some(&old_token), None).await.0, 200, "old tokens keep working");
    let minted: Value = reqwest::Client::new()
        .post(server.http_url("/v1/admin/t/acme/tokens"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"sub": "bo", "rooms": [{"room": "*", "rights": ["read"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_token = minted["token"].as_str().unwrap();
    assert_eq!(get(&server, Some(new_token), None).await.0, 200);
    server.stop();

    // Retired: only the new key is left.
    let after = json!({"acme": [{"kid": "2026-11", "secret": "new-secret-0123456789"}]}).to_string();
    let server = Server::start_with_vars(&[("AUTH_MODE", "token"), ("TENANT_SECRETS", &after)]).await;
    assert_eq!(get(&server, Some(&old_token), None).await.0, 401);
    assert_eq!(get(&server, Some(new_token), None).await.0, 200);

    // A secret too short to be safe is refused with a clear error, not accepted.
    server.stop();
    let weak =
        Server::start_with_vars(&[("AUTH_MODE", "token"), ("TENANT_SECRETS", r#"{"acme":"short"}"#)]).await;
    let (status, body) = get(&weak, Some(&old_token), None).await;
    assert_eq!(status, 500);
    assert!(body["error"]["message"].as_str().unwrap().contains("shorter than 16"), "{body}");
}
