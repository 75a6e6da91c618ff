//! Room requests: WebSocket upgrades, state reads (KV read model first), history pages and
//! server-side publishes, sent to the room's Durable Object.

use edgeroom_durable::object::http::{call, forward, read_json, request_url, require_upgrade};
use edgeroom_durable::{ApiError, InternalRequest, RoomOp, READ_MODEL_BINDING};
use edgeroom_protocol::{PublishRequest, RoomAddress, RoomView};
use worker::{Env, Headers, Request, Response};

use crate::auth::Principal;
use crate::internal;

fn request(address: &RoomAddress, op: RoomOp, who: &Principal) -> InternalRequest {
    InternalRequest::room(address.clone(), op, who.rights, who.user.clone())
}

/// `GET /rooms/{room}/ws`: the WebSocket goes straight to the room.
pub async fn socket(
    env: &Env,
    address: &RoomAddress,
    who: &Principal,
    req: &Request,
) -> Result<Response, ApiError> {
    require_upgrade(req)?;
    forward(env, &request(address, RoomOp::Socket, who), req).await.map_err(internal)
}

/// `GET /rooms/{room}/history`: a page of history from the room.
pub async fn history(
    env: &Env,
    address: &RoomAddress,
    who: &Principal,
    req: &Request,
) -> Result<Response, ApiError> {
    forward(env, &request(address, RoomOp::History, who), req).await.map_err(internal)
}

/// `POST /rooms/{room}/messages`: a server-side publish; `Idempotency-Key` supplies the op id
/// when the body has none.
pub async fn publish(
    env: &Env,
    address: &RoomAddress,
    who: &Principal,
    mut req: Request,
) -> Result<Response, ApiError> {
    let mut publish: PublishRequest = read_json(&mut req, "publish").await?;
    if let Some(key) = req.headers().get("Idempotency-Key").map_err(internal)? {
        let op_id = key.parse().map_err(|_| ApiError::bad_request("Idempotency-Key must be a UUID"))?;
        publish.op_id.get_or_insert(op_id);
    }
    let json = serde_json::to_string(&publish).map_err(|e| ApiError::internal(e.to_string()))?;
    call(env, &request(address, RoomOp::Publish, who), Some(json)).await.map_err(internal)
}

/// `GET /rooms/{room}`: from the KV read model unless `?consistency=strong`; a KV miss or
/// failure falls back to the object. Answers 304 when `If-None-Match` has the current ETag.
pub async fn state(
    env: &Env,
    address: &RoomAddress,
    who: &Principal,
    req: &Request,
) -> Result<Response, ApiError> {
    let strong = strong_consistency(&request_url(req))?;
    let if_none_match = req.headers().get("If-None-Match").map_err(internal)?;
    if !strong {
        match read_model(env, &address.read_model_key()).await {
            Ok(Some(view)) => return view_response(&view, "kv", if_none_match.as_deref()),
            Ok(None) => {}
            Err(error) => tracing::warn!(room = %address, %error, "KV read failed; asking the room"),
        }
    }
    // A strong read asks the room directly; an eventual read that missed KV is a read mark.
    let op = if strong { RoomOp::State } else { RoomOp::Read };
    let mut response = call(env, &request(address, op, who), None).await.map_err(internal)?;
    if response.status_code() != 200 {
        return Ok(response);
    }
    let view: RoomView = response.json().await.map_err(internal)?;
    view_response(&view, "object", if_none_match.as_deref())
}

/// Whether `?consistency=` asks for a strong read (`strong`) rather than the read model
/// (`eventual`, the default).
pub fn strong_consistency(url: &edgeroom_protocol::RequestUrl) -> Result<bool, ApiError> {
    match url.query_param("consistency") {
        None => Ok(false),
        Some(value) if value == "strong" => Ok(true),
        Some(value) if value == "eventual" => Ok(false),
        Some(value) => {
            Err(ApiError::bad_request(format!("consistency is strong or eventual, not {value:?}")))
        }
    }
}

/// A JSON read model from KV; `None` when absent or unreadable (the object answers instead).
pub async fn read_model<T: serde::de::DeserializeOwned>(env: &Env, key: &str) -> Result<Option<T>, ApiError> {
    let kv = env.kv(READ_MODEL_BINDING).map_err(internal)?;
    let text = kv.get(key).text().await.map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
}

fn view_response(view: &RoomView, source: &str, if_none_match: Option<&str>) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", view.seq);
    let age_ms = worker::Date::now().as_millis().saturating_sub(view.generated_ms);
    let headers = Headers::new();
    let set = |name: &str, value: &str| headers.set(name, value).map_err(internal);
    set("ETag", &etag)?;
    set("Cache-Control", "private, max-age=1")?;
    set("X-Edgeroom-Seq", &view.seq.to_string())?;
    set("X-Edgeroom-Epoch", &view.epoch)?;
    set("X-Edgeroom-Age-Ms", &age_ms.to_string())?;
    set("X-Edgeroom-Source", source)?;
    let matches = if_none_match
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    if matches {
        return Ok(Response::empty().map_err(internal)?.with_status(304).with_headers(headers));
    }
    set("Content-Type", "application/json")?;
    Ok(Response::from_json(view).map_err(internal)?.with_headers(headers))
}
