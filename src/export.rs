//! The export queue's consumer: each batch a room handed to the queue is POSTed to every
//! webhook endpoint of its tenant that wants some of its events, signed per Standard Webhooks.
//! A batch that any endpoint refused is retried by the queue with growing delays; after the
//! last attempt the queue moves it to the dead-letter queue, whose consumer records it in D1 for
//! listing and replay through the admin API.

use std::collections::HashMap;
use std::time::Duration;

use edgeroom_durable::export::{sign_webhook, webhook_key, ExportBatch, ExportKind};
use edgeroom_durable::index;
use edgeroom_durable::object::d1::{database, prepare};
use futures_util::future::{select, Either};
use serde::{Deserialize, Serialize};
use worker::{
    AbortController, Env, Fetch, Headers, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder,
    Request, RequestInit, Result,
};

/// Name of the dead-letter queue (see `wrangler.toml`).
pub const DEAD_LETTER_QUEUE: &str = "edgeroom-export-dlq";
/// How long one webhook delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait before a failed batch is tried again.
const MAX_RETRY_DELAY_SECS: u64 = 300;

/// One endpoint as D1 stores it.
#[derive(Debug, Clone, Deserialize)]
pub struct EndpointRow {
    /// Its id.
    pub id: String,
    /// Where batches go.
    pub url: String,
    /// Its signing secret.
    pub secret: String,
    /// The kinds it wants (JSON array).
    pub kinds: String,
    /// When it was added.
    pub created_ms: f64,
}

/// What an endpoint receives: the batch's events it wants.
#[derive(Serialize)]
struct Delivery<'a> {
    tenant: &'a str,
    room: &'a str,
    events: Vec<&'a edgeroom_durable::export::ExportEvent>,
}

/// Handles one batch of queue messages (the export queue or its dead-letter queue).
pub async fn consume(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let dead_letters = batch.queue() == DEAD_LETTER_QUEUE;
    let mut endpoints: HashMap<String, Vec<EndpointRow>> = HashMap::new();
    for message in batch.messages()? {
        let export: ExportBatch = match serde_json::from_str(message.body()) {
            Ok(export) => export,
            Err(error) => {
                // Not an export batch (nothing of ours sends one): drop it loudly, never loop.
                tracing::error!(%error, "an export queue message is not an export batch; dropped");
                message.ack();
                continue;
            }
        };
        let export = &export;
        if dead_letters {
            record_dead_letter(env, export).await?;
            message.ack();
            continue;
        }
        if !endpoints.contains_key(&export.tenant) {
            let rows = tenant_endpoints(env, &export.tenant).await?;
            endpoints.insert(export.tenant.clone(), rows);
        }
        let mut failed = 0;
        for endpoint in endpoints.get(&export.tenant).into_iter().flatten() {
            if let Err(error) = deliver(endpoint, export).await {
                tracing::warn!(tenant = %export.tenant, room = %export.room, endpoint = %endpoint.id, %error, "webhook delivery failed");
                failed += 1;
            }
        }
        if failed == 0 {
            message.ack();
        } else {
            // The message's age grows with every attempt: so does the wait.
            let age_secs =
                worker::Date::now().as_millis().saturating_sub(message.timestamp().as_millis()) / 1000;
            let delay = age_secs.clamp(1, MAX_RETRY_DELAY_SECS) as u32;
            message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build());
        }
    }
    Ok(())
}

/// The tenant's endpoints.
pub async fn tenant_endpoints(env: &Env, tenant: &str) -> Result<Vec<EndpointRow>> {
    prepare(&database(env)?, &index::endpoints_of(tenant))?.all().await?.results()
}

/// POSTs the events of `export` that `endpoint` wants; a 2xx answer within the timeout counts.
async fn deliver(endpoint: &EndpointRow, export: &ExportBatch) -> Result<()> {
    let kinds: Vec<ExportKind> = serde_json::from_str(&endpoint.kinds).unwrap_or_default();
    let events: Vec<_> = export.events.iter().filter(|event| kinds.contains(&event.kind)).collect();
    if events.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(&Delivery { tenant: &export.tenant, room: &export.room, events })?;
    let key = webhook_key(&endpoint.secret).map_err(|e| worker::Error::RustError(e.message))?;
    let timestamp = worker::Date::now().as_millis() / 1000;
    let signature =
        sign_webhook(&key, &export.id, timestamp, &body).map_err(|e| worker::Error::RustError(e.message))?;
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    headers.set("webhook-id", &export.id)?;
    headers.set("webhook-timestamp", &timestamp.to_string())?;
    headers.set("webhook-signature", &signature)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let request = Request::new_with_init(&endpoint.url, &init)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Box::pin(worker::Delay::from(DELIVERY_TIMEOUT));
    let outcome = match select(send, timeout).await {
        Either::Left((response, _)) => {
            let status = response?.status_code();
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(worker::Error::RustError(format!("the endpoint answered {status}")))
            }
        }
        Either::Right(_) => {
            controller.abort();
            Err(worker::Error::RustError("the endpoint did not answer in time".into()))
        }
    };
    outcome
}

async fn record_dead_letter(env: &Env, export: &ExportBatch) -> Result<()> {
    let json = serde_json::to_string(export)?;
    let now = worker::Date::now().as_millis();
    let statement = index::add_dead_letter(&export.tenant, &export.id, &export.room, &json, now);
    prepare(&database(env)?, &statement)?.run().await?;
    tracing::warn!(tenant = %export.tenant, room = %export.room, batch = %export.id, "export batch dead-lettered");
    Ok(())
}
