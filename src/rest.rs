//! Room requests: WebSocket upgrades, state reads (KV read model first), history pages and
//! server-side publishes, forwarded to the room's Durable Object.

use edgeroom_durable::object::{headers, is_websocket_upgrade, json_error, Log, RoomOp, READ_MODEL_BINDING};
use edgeroom_protocol::{ErrorCode, PublishRequest, RoomAddress, RoomView};
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, Stub};

use crate::auth::Principal;

/// Binding name of the room Durable Object namespace (see `wrangler.toml`).
const ROOMS_BINDING: &str = "ROOMS";
/// Largest request body accepted, in bytes.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Serves one authorized room request.
pub async fn room(
    op: RoomOp,
    address: &RoomAddress,
    who: Principal,
    mut req: Request,
    env: &Env,
) -> Result<Response> {
    match op {
        RoomOp::Socket => {
            if !is_websocket_upgrade(&req)? {
                return json_error(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
            }
            forward(env, address, op, &who, req).await
        }
        RoomOp::History => forward(env, address, op, &who, req).await,
        // Admin operations come through `admin.rs`, never from a room route.
        RoomOp::Restore | RoomOp::Faults => json_error(ErrorCode::NotFound, "not a room route"),
        RoomOp::State => state(env, address, &who, req).await,
        RoomOp::Publish => {
            let body = match read_body(&mut req).await? {
                Ok(body) => body,
                Err(response) => return Ok(response),
            };
            // serde would also take a JSON array for a struct; the API takes an object.
            if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
                return json_error(ErrorCode::BadRequest, "the publish body must be a JSON object");
            }
            let mut publish: PublishRequest = match serde_json::from_slice(&body) {
                Ok(publish) => publish,
                Err(error) => {
                    return json_error(ErrorCode::BadRequest, &format!("bad publish body: {error}"))
                }
            };
            if let Some(key) = req.headers().get("Idempotency-Key")? {
                let Ok(op_id) = key.parse() else {
                    return json_error(ErrorCode::BadRequest, "Idempotency-Key must be a UUID");
                };
                // The body's op_id, when it has one, wins.
                publish.op_id.get_or_insert(op_id);
            }
            let json =
                serde_json::to_string(&publish).map_err(|e| worker::Error::RustError(e.to_string()))?;
            forward_json(env, address, op, &who, json).await
        }
    }
}

/// `GET /rooms/{room}`: from the KV read model unless `?consistency=strong`; a KV miss or
/// failure falls back to the object. Answers 304 when `If-None-Match` has the current ETag.
async fn state(env: &Env, address: &RoomAddress, who: &Principal, req: Request) -> Result<Response> {
    let url = req.url()?;
    let strong = match strong_consistency(&url) {
        Ok(strong) => strong,
        Err(message) => return json_error(ErrorCode::BadRequest, &message),
    };
    let if_none_match = req.headers().get("If-None-Match")?;
    if !strong {
        match read_model(env, address).await {
            Ok(Some(view)) => return view_response(&view, "kv", if_none_match.as_deref()),
            Ok(None) => {}
            Err(error) => {
                Log::from_env(env).warn(&format!("KV read of {address} failed, asking the room: {error}"))
            }
        }
    }
    let mut response = forward(env, address, RoomOp::State, who, req).await?;
    if response.status_code() != 200 {
        return Ok(response);
    }
    let view: RoomView = response.json().await?;
    view_response(&view, "object", if_none_match.as_deref())
}

/// Whether `?consistency=` asks for a strong read (`strong`) rather than the read model
/// (`eventual`, the default).
pub fn strong_consistency(url: &worker::Url) -> std::result::Result<bool, String> {
    match url.query_pairs().find(|(name, _)| name == "consistency").map(|(_, value)| value.into_owned()) {
        None => Ok(false),
        Some(value) if value == "strong" => Ok(true),
        Some(value) if value == "eventual" => Ok(false),
        Some(value) => Err(format!("consistency is strong or eventual, not {value:?}")),
    }
}

async fn read_model(env: &Env, address: &RoomAddress) -> Result<Option<RoomView>> {
    let kv = env.kv(READ_MODEL_BINDING)?;
    let text = kv
        .get(&address.read_model_key())
        .text()
        .await
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
}

fn view_response(view: &RoomView, source: &str, if_none_match: Option<&str>) -> Result<Response> {
    let etag = format!("\"{}\"", view.seq);
    let age_ms = worker::Date::now().as_millis().saturating_sub(view.generated_ms);
    let headers = Headers::new();
    headers.set("ETag", &etag)?;
    headers.set("Cache-Control", "private, max-age=1")?;
    headers.set("X-Edgeroom-Seq", &view.seq.to_string())?;
    headers.set("X-Edgeroom-Age-Ms", &age_ms.to_string())?;
    headers.set("X-Edgeroom-Source", source)?;
    let matches = if_none_match
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    if matches {
        return Ok(Response::empty()?.with_status(304).with_headers(headers));
    }
    headers.set("Content-Type", "application/json")?;
    Ok(Response::from_json(view)?.with_headers(headers))
}

/// Reads a request body of at most [`MAX_BODY_BYTES`]; a larger one is a 413 response.
pub async fn read_body(req: &mut Request) -> Result<std::result::Result<Vec<u8>, Response>> {
    let declared = req.headers().get("Content-Length")?.and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Ok(Err(too_large()?));
    }
    let body = req.bytes().await?;
    if body.len() > MAX_BODY_BYTES {
        return Ok(Err(too_large()?));
    }
    Ok(Ok(body))
}

fn too_large() -> Result<Response> {
    json_error(ErrorCode::TooLarge, &format!("request bodies are at most {MAX_BODY_BYTES} bytes"))
}

/// Sends a JSON body to the room's object as a POST of `op`.
pub async fn forward_json(
    env: &Env,
    address: &RoomAddress,
    op: RoomOp,
    who: &Principal,
    json: String,
) -> Result<Response> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(json.into()));
    forward(env, address, op, who, Request::new_with_init("https://room.internal/", &init)?).await
}

/// Forwards `req` to the room's object with the internal headers set (and any the client sent
/// under those names removed).
pub async fn forward(
    env: &Env,
    address: &RoomAddress,
    op: RoomOp,
    who: &Principal,
    req: Request,
) -> Result<Response> {
    let mut forwarded = req.clone_mut()?;
    let headers = forwarded.headers_mut()?;
    for name in headers::ALL {
        headers.delete(name)?;
    }
    headers.set(headers::OP, op.as_str())?;
    headers.set(headers::TENANT, address.tenant())?;
    headers.set(headers::ROOM, address.room())?;
    headers.set(headers::RIGHTS, &who.rights.to_string())?;
    if let Some(user) = &who.user {
        headers.set(headers::USER, user)?;
    }
    room_stub(env, address)?.fetch_with_request(forwarded).await
}

fn room_stub(env: &Env, address: &RoomAddress) -> Result<Stub> {
    env.durable_object(ROOMS_BINDING)?.id_from_name(&address.shard_key())?.get_stub()
}
