//! The admin API of event export: a tenant's webhook endpoints (what each receives and the secret
//! it is signed with) and the dead letters, which can be queued again once an endpoint recovers.

use edgeroom_durable::export::{check_endpoint_url, webhook_key, ExportBatch, ExportKind};
use edgeroom_durable::object::d1::{database, prepare};
use edgeroom_durable::object::http::{entropy, read_json};
use edgeroom_durable::object::send_batch;
use edgeroom_durable::{index, ApiError};
use edgeroom_protocol::{is_loopback_host, AdminActionResult};
use serde::{Deserialize, Serialize};
use worker::{Env, Request, Response};

use crate::export::tenant_endpoints;
use crate::internal;

/// Body of `POST /v1/admin/t/{tenant}/webhooks/create`.
#[derive(Debug, Deserialize)]
struct NewEndpoint {
    url: String,
    secret: String,
    kinds: Vec<String>,
}

/// An endpoint as the admin API shows it (never its secret).
#[derive(Debug, Serialize)]
struct Endpoint {
    id: String,
    url: String,
    kinds: Vec<ExportKind>,
    created_ms: u64,
}

/// Most endpoints per tenant (each one costs a POST per exported batch).
const MAX_ENDPOINTS: usize = 20;

fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Response::from_json(value).map_err(internal)
}

/// `GET /v1/admin/t/{tenant}/webhooks`
pub async fn list(env: &Env, tenant: &str) -> Result<Response, ApiError> {
    let rows = tenant_endpoints(env, tenant).await.map_err(internal)?;
    let endpoints: Vec<Endpoint> = rows
        .into_iter()
        .map(|row| Endpoint {
            id: row.id,
            url: row.url,
            kinds: serde_json::from_str(&row.kinds).unwrap_or_default(),
            created_ms: row.created_ms as u64,
        })
        .collect();
    json(&endpoints)
}

/// `POST /v1/admin/t/{tenant}/webhooks/create`: validates the URL (https; http only to
/// loopback on a local runtime), the kinds and the secret, then stores the endpoint.
pub async fn create(env: &Env, tenant: &str, mut req: Request) -> Result<Response, ApiError> {
    let local = edgeroom_durable::object::http::request_url(&req).host_str().is_some_and(is_loopback_host);
    let new: NewEndpoint = read_json(&mut req, "webhook").await?;
    check_endpoint_url(&new.url, local)?;
    webhook_key(&new.secret)?;
    if new.kinds.is_empty() {
        return Err(ApiError::bad_request("kinds names at least one event kind"));
    }
    let kinds = new
        .kinds
        .iter()
        .map(|kind| {
            serde_json::from_value::<ExportKind>(serde_json::Value::String(kind.clone())).map_err(|_| {
                let known: Vec<String> = ExportKind::ALL
                    .iter()
                    .filter_map(|k| serde_json::to_value(k).ok())
                    .map(|v| v.to_string())
                    .collect();
                ApiError::bad_request(format!(
                    "unknown event kind {kind:?}; known kinds: {}",
                    known.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<ExportKind>, ApiError>>()?;
    if tenant_endpoints(env, tenant).await.map_err(internal)?.len() >= MAX_ENDPOINTS {
        return Err(ApiError::new(
            edgeroom_protocol::ErrorCode::LimitExceeded,
            format!("at most {MAX_ENDPOINTS} endpoints"),
        ));
    }
    let id = format!("wh_{:013x}", entropy());
    let now = worker::Date::now().as_millis();
    let kinds_json = serde_json::to_string(&kinds).map_err(|e| ApiError::internal(e.to_string()))?;
    let statement = index::add_endpoint(tenant, &id, &new.url, &new.secret, &kinds_json, now);
    prepare(&database(env).map_err(internal)?, &statement)
        .map_err(internal)?
        .run()
        .await
        .map_err(internal)?;
    json(&Endpoint { id, url: new.url, kinds, created_ms: now })
}

/// `POST /v1/admin/t/{tenant}/webhooks/{id}/delete`
pub async fn delete(env: &Env, tenant: &str, id: &str) -> Result<Response, ApiError> {
    let db = database(env).map_err(internal)?;
    let result =
        prepare(&db, &index::remove_endpoint(tenant, id)).map_err(internal)?.run().await.map_err(internal)?;
    let changed = result.meta().ok().flatten().and_then(|meta| meta.changes).unwrap_or(0);
    if changed == 0 {
        return Err(ApiError::not_found(format!("no webhook endpoint {id:?}")));
    }
    json(&AdminActionResult { affected: changed as u64 })
}

#[derive(Debug, Deserialize)]
struct DeadLetterRow {
    id: String,
    room: String,
    batch: String,
    failed_ms: f64,
}

/// A dead letter as the admin API shows it.
#[derive(Debug, Serialize)]
struct DeadLetter {
    id: String,
    room: String,
    events: usize,
    failed_ms: u64,
    batch: ExportBatch,
}

async fn dead_letter_rows(env: &Env, tenant: &str) -> Result<Vec<DeadLetterRow>, ApiError> {
    let statement = index::dead_letters_of(tenant, 1000);
    prepare(&database(env).map_err(internal)?, &statement)
        .map_err(internal)?
        .all()
        .await
        .and_then(|result| result.results())
        .map_err(internal)
}

/// `GET /v1/admin/t/{tenant}/dead-letters`
pub async fn dead_letters(env: &Env, tenant: &str) -> Result<Response, ApiError> {
    let letters: Vec<DeadLetter> = dead_letter_rows(env, tenant)
        .await?
        .into_iter()
        .filter_map(|row| {
            let batch: ExportBatch = serde_json::from_str(&row.batch).ok()?;
            Some(DeadLetter {
                id: row.id,
                room: row.room,
                events: batch.events.len(),
                failed_ms: row.failed_ms as u64,
                batch,
            })
        })
        .collect();
    json(&letters)
}

/// `POST /v1/admin/t/{tenant}/dead-letters/replay`: queues every dead letter again (delivery
/// ids stay the same, so receivers still deduplicate).
pub async fn replay(env: &Env, tenant: &str) -> Result<Response, ApiError> {
    let db = database(env).map_err(internal)?;
    let mut replayed = 0;
    for row in dead_letter_rows(env, tenant).await? {
        let Ok(batch) = serde_json::from_str::<ExportBatch>(&row.batch) else { continue };
        send_batch(env, &batch).await.map_err(internal)?;
        prepare(&db, &index::remove_dead_letter(tenant, &row.id))
            .map_err(internal)?
            .run()
            .await
            .map_err(internal)?;
        replayed += 1;
    }
    json(&AdminActionResult { affected: replayed })
}
