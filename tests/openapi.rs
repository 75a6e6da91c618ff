//! The implementation against its contract: schemathesis (from PyPI, installed by
//! `scripts/setup.sh` into `.venv`) generates requests from `docs/openapi.yaml` — valid and
//! invalid — and checks every answer's status, headers and body against the spec, on a real
//! `wrangler dev` in token mode.

use std::process::Command;

use edgeroom_tests::{repo_root, Server};
use serde_json::{json, Value};

const ADMIN_KEY: &str = "openapi-admin-key";

#[tokio::test]
async fn the_api_matches_docs_openapi_yaml() {
    let server = Server::start_with_vars(&[
        ("AUTH_MODE", "token"),
        ("TENANT_SECRETS", r#"{"acme":"acme-secret-0123456789"}"#),
        ("ADMIN_KEY", ADMIN_KEY),
    ])
    .await;
    let minted: Value = reqwest::Client::new()
        .post(server.http_url("/v1/admin/t/acme/tokens"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"sub": "schemathesis", "rooms": [{"room": "*", "rights": ["read", "write", "presence", "admin"]}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = repo_root();
    let output = Command::new(root.join(".venv/bin/schemathesis"))
        .current_dir(&root)
        .env("EDGEROOM_TOKEN", minted["token"].as_str().unwrap())
        .env("EDGEROOM_ADMIN_KEY", ADMIN_KEY)
        .env("SCHEMATHESIS_HOOKS", "")
        .args([
            "--config-file",
            "tests/openapi/schemathesis.toml",
            "run",
            "docs/openapi.yaml",
            "--checks",
            "all",
        ])
        .arg("--url")
        .arg(server.http_url(""))
        .output()
        .expect("run .venv/bin/schemathesis (installed by scripts/setup.sh)");
    let report =
        format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "schemathesis found mismatches:\n{report}");
    // Every operation but the WebSocket upgrades and webhook creation (tests/rooms.rs, tests/admin.rs, tests/export.rs).
    assert!(report.contains("Tested: 27"), "every operation was tested:\n{report}");
}
