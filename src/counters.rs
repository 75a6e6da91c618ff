//! Counter routes: reads (KV read model first, or the sum from the home shard), writes spread
//! over shards by op id (once, whatever the shard count did in between), resets, shard
//! declarations and live subscriptions.

use std::cell::RefCell;
use std::collections::HashMap;

use edgeroom_durable::object::http::{call, forward, read_json, request_url, require_upgrade};
use edgeroom_durable::object::RemoteShards;
use edgeroom_durable::{routed_write, ApiError, InternalRequest, ShardHistory, ShardOp, ShardWrite};
use edgeroom_protocol::{
    CounterAddRequest, CounterAddress, CounterOp, CounterResetRequest, CounterSetRequest,
    CounterShardsRequest, CounterView, ErrorCode, Rights,
};
use uuid::Uuid;
use worker::{Env, Headers, Request, Response};

use crate::auth::Principal;
use crate::internal;
use crate::rooms::{read_model, strong_consistency};

/// How long a router isolate trusts its cached shard counts, in milliseconds. A stale count only
/// means fewer shards take writes for a moment; a write still finds an op id applied before.
const SHARDS_CACHE_MS: u64 = 5_000;
/// Most counters whose shard counts one isolate caches (names are client-chosen).
const SHARDS_CACHE_ENTRIES: usize = 1_024;

thread_local! {
    static SHARDS: RefCell<HashMap<CounterAddress, (ShardHistory, u64)>> = RefCell::new(HashMap::new());
}

fn op_id(op_id: Option<Uuid>) -> Result<String, ApiError> {
    op_id
        .map(|id| id.to_string())
        .ok_or_else(|| ApiError::bad_request("counter writes need an op_id (a UUID) in the body"))
}

/// `POST /counters/{name}/add`
pub async fn add(env: &Env, address: &CounterAddress, mut req: Request) -> Result<Response, ApiError> {
    let request: CounterAddRequest = read_json(&mut req, "counter").await?;
    let write = ShardWrite { op_id: op_id(request.op_id)?, op: CounterOp::Add(request.delta) };
    write_once(env, address, &write).await
}

/// `POST /counters/{name}/set` (unsharded counters only).
pub async fn set(env: &Env, address: &CounterAddress, mut req: Request) -> Result<Response, ApiError> {
    let request: CounterSetRequest = read_json(&mut req, "counter").await?;
    let write = ShardWrite { op_id: op_id(request.op_id)?, op: CounterOp::Set(request.value) };
    if shard_history(env, address).await?.current() > 1 {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            "set is not available on a sharded counter; use reset",
        ));
    }
    write_once(env, address, &write).await
}

/// `POST /counters/{name}/reset`: the home resets every shard.
pub async fn reset(env: &Env, address: &CounterAddress, mut req: Request) -> Result<Response, ApiError> {
    let request: CounterResetRequest = read_json(&mut req, "counter").await?;
    let write = ShardWrite { op_id: op_id(request.op_id)?, op: CounterOp::Reset };
    let request = InternalRequest::shard(address.clone(), 0, ShardOp::ResetAll, Rights::ALL);
    let body = serde_json::to_string(&write).map_err(|e| ApiError::internal(e.to_string()))?;
    call(env, &request, Some(body)).await.map_err(internal)
}

/// `POST /counters/{name}/shards`
pub async fn shards(env: &Env, address: &CounterAddress, mut req: Request) -> Result<Response, ApiError> {
    let request: CounterShardsRequest = read_json(&mut req, "shards").await?;
    SHARDS.with(|cache| cache.borrow_mut().remove(address));
    let internal_request = InternalRequest::shard(address.clone(), 0, ShardOp::SetShards, Rights::ALL);
    let body = serde_json::to_string(&request).map_err(|e| ApiError::internal(e.to_string()))?;
    call(env, &internal_request, Some(body)).await.map_err(internal)
}

/// `GET /counters/{name}/ws`: a live subscription at the home shard.
pub async fn socket(
    env: &Env,
    address: &CounterAddress,
    who: &Principal,
    req: &Request,
) -> Result<Response, ApiError> {
    require_upgrade(req)?;
    let request = InternalRequest::shard(address.clone(), 0, ShardOp::Socket, who.rights);
    forward(env, &request, req).await.map_err(internal)
}

/// `GET /counters/{name}`: the KV read model unless `?consistency=strong`, else the home's sum.
pub async fn state(env: &Env, address: &CounterAddress, req: &Request) -> Result<Response, ApiError> {
    let strong = strong_consistency(&request_url(req))?;
    if !strong {
        match read_model::<CounterView>(env, &address.read_model_key()).await {
            Ok(Some(view)) => return view_response(&view, "kv"),
            Ok(None) => {}
            Err(error) => tracing::warn!(counter = %address, %error, "KV read failed; asking the counter"),
        }
    }
    // A strong read asks the home directly; an eventual read that missed KV is a read mark.
    let op = if strong { ShardOp::Read } else { ShardOp::ReadMiss };
    let view: CounterView = RemoteShards { env, address }.call(0, op, None::<&()>).await?;
    view_response(&view, "object")
}

/// Applies a write once across the shards (see [`routed_write`]).
async fn write_once(env: &Env, address: &CounterAddress, write: &ShardWrite) -> Result<Response, ApiError> {
    let history = shard_history(env, address).await?;
    let result =
        routed_write(&RemoteShards { env, address }, &history, write, worker::Date::now().as_millis())
            .await?;
    Response::from_json(&result).map_err(internal)
}

/// The counter's shard counts, cached briefly per isolate in a bounded map.
async fn shard_history(env: &Env, address: &CounterAddress) -> Result<ShardHistory, ApiError> {
    let now = worker::Date::now().as_millis();
    let cached = SHARDS
        .with(|cache| cache.borrow().get(address).filter(|(_, until)| now < *until).map(|(h, _)| h.clone()));
    if let Some(history) = cached {
        return Ok(history);
    }
    let home = RemoteShards { env, address }.state(0).await?;
    SHARDS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= SHARDS_CACHE_ENTRIES {
            cache.retain(|_, (_, until)| now < *until);
            if cache.len() >= SHARDS_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(address.clone(), (home.history.clone(), now + SHARDS_CACHE_MS));
    });
    Ok(home.history)
}

fn view_response(view: &CounterView, source: &str) -> Result<Response, ApiError> {
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(internal);
    set("Content-Type", "application/json")?;
    set("ETag", &format!("\"{}\"", view.version))?;
    set("Cache-Control", "private, max-age=1")?;
    set("X-Edgeroom-Source", source)?;
    Ok(Response::from_json(view).map_err(internal)?.with_headers(headers))
}
