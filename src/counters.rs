//! Counter routes: reads (KV read model first, or the sum from the home shard), writes spread over
//! shards by op id, resets, shard declarations and live subscriptions.

use std::cell::RefCell;
use std::collections::HashMap;

use edgeroom_durable::object::{
    headers, is_websocket_upgrade, json_error, shard_request, CounterRequest, CounterWrite, Log, ShardState,
    COUNTERS_BINDING, READ_MODEL_BINDING, SHARD_HEADER,
};
use edgeroom_durable::shard_for;
use edgeroom_protocol::{
    CounterAddRequest, CounterOp, CounterResetRequest, CounterSetRequest, CounterView, ErrorCode, Rights,
    RoomAddress, Route,
};
use uuid::Uuid;
use worker::{Env, Headers, Request, Response, Result};

use crate::rest::{read_body, strong_consistency};

/// How long a router isolate trusts its cached shard count, in milliseconds. Shards only grow,
/// and a stale count only means fewer shards take writes for a moment: reads always sum them all.
const SHARDS_CACHE_MS: u64 = 5_000;

thread_local! {
    static SHARDS: RefCell<HashMap<String, (u32, u64)>> = RefCell::new(HashMap::new());
}

/// Serves one authorized counter route.
pub async fn handle(
    route: Route,
    address: &RoomAddress,
    rights: Rights,
    mut req: Request,
    env: &Env,
) -> Result<Response> {
    match route {
        Route::CounterState(_) => state(env, address, &req).await,
        Route::CounterSocket(_) => {
            if !is_websocket_upgrade(&req)? {
                return json_error(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
            }
            let mut forwarded = req.clone_mut()?;
            let headers = forwarded.headers_mut()?;
            for name in headers::ALL {
                headers.delete(name)?;
            }
            headers.set(headers::OP, CounterRequest::Socket.as_str())?;
            headers.set(headers::TENANT, address.tenant())?;
            headers.set(headers::ROOM, address.room())?;
            headers.set(SHARD_HEADER, "0")?;
            headers.set(headers::RIGHTS, &rights.to_string())?;
            home_stub(env, address)?.fetch_with_request(forwarded).await
        }
        Route::CounterAdd(_) => {
            let (request, op_id) = match body::<CounterAddRequest>(&mut req, |r| r.op_id).await? {
                Ok(parsed) => parsed,
                Err(response) => return Ok(response),
            };
            let shards = shard_count(env, address).await?;
            let shard = shard_for(&op_id.to_string(), shards);
            let write = CounterWrite { op_id: op_id.to_string(), op: CounterOp::Add(request.delta) };
            shard_request(env, address, shard, CounterRequest::Write, Some(&write)).await
        }
        Route::CounterSet(_) => {
            let (request, op_id) = match body::<CounterSetRequest>(&mut req, |r| r.op_id).await? {
                Ok(parsed) => parsed,
                Err(response) => return Ok(response),
            };
            if shard_count(env, address).await? > 1 {
                return json_error(
                    ErrorCode::LimitExceeded,
                    "set is not available on a sharded counter; use reset",
                );
            }
            let write = CounterWrite { op_id: op_id.to_string(), op: CounterOp::Set(request.value) };
            shard_request(env, address, 0, CounterRequest::Write, Some(&write)).await
        }
        Route::CounterReset(_) => {
            let (_, op_id) = match body::<CounterResetRequest>(&mut req, |r| r.op_id).await? {
                Ok(parsed) => parsed,
                Err(response) => return Ok(response),
            };
            let write = CounterWrite { op_id: op_id.to_string(), op: CounterOp::Reset };
            shard_request(env, address, 0, CounterRequest::ResetAll, Some(&write)).await
        }
        Route::CounterShards(_) => {
            let body = match read_body(&mut req).await? {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
            SHARDS.with(|cache| cache.borrow_mut().remove(&address.to_string()));
            let headers = internal_headers(address, CounterRequest::Shards)?;
            let mut init = worker::RequestInit::new();
            init.with_method(worker::Method::Post)
                .with_headers(headers)
                .with_body(Some(String::from_utf8_lossy(&body).into_owned().into()));
            let request = Request::new_with_init("https://counter.internal/", &init)?;
            home_stub(env, address)?.fetch_with_request(request).await
        }
        _ => json_error(ErrorCode::NotFound, "not a counter route"),
    }
}

fn home_stub(env: &Env, address: &RoomAddress) -> Result<worker::Stub> {
    env.durable_object(COUNTERS_BINDING)?.id_from_name(&address.counter_shard_key(0))?.get_stub()
}

fn internal_headers(address: &RoomAddress, op: CounterRequest) -> Result<Headers> {
    let headers = Headers::new();
    headers.set(headers::OP, op.as_str())?;
    headers.set(headers::TENANT, address.tenant())?;
    headers.set(headers::ROOM, address.room())?;
    headers.set(SHARD_HEADER, "0")?;
    Ok(headers)
}

/// Reads a JSON object body and its required op id.
async fn body<T: serde::de::DeserializeOwned>(
    req: &mut Request,
    op_id_of: impl Fn(&T) -> Option<Uuid>,
) -> Result<std::result::Result<(T, Uuid), Response>> {
    let bytes = match read_body(req).await? {
        Ok(bytes) => bytes,
        Err(response) => return Ok(Err(response)),
    };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(Err(json_error(ErrorCode::BadRequest, "the body must be a JSON object")?));
    }
    let parsed: T = match serde_json::from_slice(&bytes) {
        Ok(parsed) => parsed,
        Err(error) => {
            return Ok(Err(json_error(ErrorCode::BadRequest, &format!("bad counter body: {error}"))?))
        }
    };
    match op_id_of(&parsed) {
        Some(op_id) => Ok(Ok((parsed, op_id))),
        None => {
            Ok(Err(json_error(ErrorCode::BadRequest, "counter writes need an op_id (a UUID) in the body")?))
        }
    }
}

/// The counter's shard count, cached briefly per isolate.
async fn shard_count(env: &Env, address: &RoomAddress) -> Result<u32> {
    let now = worker::Date::now().as_millis();
    let key = address.to_string();
    if let Some((shards, until)) = SHARDS.with(|cache| cache.borrow().get(&key).copied()) {
        if now < until {
            return Ok(shards);
        }
    }
    let mut response = shard_request(env, address, 0, CounterRequest::Get, None).await?;
    let home: ShardState = response.json().await?;
    SHARDS.with(|cache| cache.borrow_mut().insert(key, (home.shards, now + SHARDS_CACHE_MS)));
    Ok(home.shards)
}

/// `GET /counters/{name}`: the KV read model unless `?consistency=strong`, else the home's sum.
async fn state(env: &Env, address: &RoomAddress, req: &Request) -> Result<Response> {
    let url = req.url()?;
    let strong = match strong_consistency(&url) {
        Ok(strong) => strong,
        Err(message) => return json_error(ErrorCode::BadRequest, &message),
    };
    if !strong {
        match env.kv(READ_MODEL_BINDING)?.get(&address.counter_read_model_key()).text().await {
            Ok(Some(text)) => {
                if let Ok(view) = serde_json::from_str::<CounterView>(&text) {
                    return view_response(&view, "kv");
                }
            }
            Ok(None) => {}
            Err(error) => Log::from_env(env).warn(&format!("KV read of counter {address} failed: {error}")),
        }
    }
    let mut response = shard_request(env, address, 0, CounterRequest::Read, None).await?;
    if response.status_code() != 200 {
        return Ok(response);
    }
    let view: CounterView = response.json().await?;
    view_response(&view, "object")
}

fn view_response(view: &CounterView, source: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    headers.set("ETag", &format!("\"{}\"", view.version))?;
    headers.set("Cache-Control", "private, max-age=1")?;
    headers.set("X-Edgeroom-Source", source)?;
    Ok(Response::from_json(view)?.with_headers(headers))
}
