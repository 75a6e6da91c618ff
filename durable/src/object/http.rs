//! The HTTP and WebSocket plumbing shared by the objects and the router: errors become JSON
//! responses here and nowhere else, bodies are read and bounded here, internal requests are
//! sent and received here.

use edgeroom_protocol::{RequestUrl, WireFrame};
use serde::Serialize;
use worker::wasm_bindgen::JsCast;
use worker::{js_sys, Env, Method, Request, RequestInit, Response, State, Stub, WebSocket};

use crate::{headers, parse_json_object, ApiError, InternalRequest, Target, COUNTERS_BINDING, ROOMS_BINDING};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The JSON error response for `error`, with its code's status.
pub fn error_response(error: &ApiError) -> worker::Result<Response> {
    Ok(Response::from_json(&error.body())?.with_status(error.status()))
}

/// The response a request was served, or its error as a JSON error response.
pub fn served_or_error(served: Result<Response, ApiError>) -> worker::Result<Response> {
    served.or_else(|error| error_response(&error))
}

/// The value as a 200 JSON response, or the error as a JSON error response.
pub fn respond<T: Serialize>(result: Result<T, ApiError>) -> worker::Result<Response> {
    match result {
        Ok(value) => Response::from_json(&value),
        Err(error) => error_response(&error),
    }
}

/// Turns a runtime failure (a binding call that failed) into an internal error.
pub fn internal(error: worker::Error) -> ApiError {
    ApiError::internal(error.to_string())
}

/// Reads a body of at most [`MAX_BODY_BYTES`]: a declared larger size is refused before reading,
/// and a body without a declared size is read as a stream and refused once it passes the limit.
pub async fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            edgeroom_protocol::ErrorCode::TooLarge,
            format!("request bodies are at most {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared =
        req.headers().get("Content-Length").map_err(internal)?.and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let Some(mut stream) = req.stream().ok() else { return Ok(Vec::new()) };
    let mut body = Vec::new();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.map_err(internal)?);
        if body.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
    }
    Ok(body)
}

/// Reads and parses a JSON object body (`what` names it in errors).
pub async fn read_json<T: serde::de::DeserializeOwned>(req: &mut Request, what: &str) -> Result<T, ApiError> {
    parse_json_object(what, &read_body(req).await?)
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(req: &Request) -> bool {
    req.headers().get("Upgrade").ok().flatten().is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Refuses a request that is not a WebSocket upgrade.
pub fn require_upgrade(req: &Request) -> Result<(), ApiError> {
    if is_websocket_upgrade(req) {
        return Ok(());
    }
    Err(ApiError::new(edgeroom_protocol::ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade"))
}

/// Reads the internal request an object was sent.
pub fn received(req: &Request) -> Result<InternalRequest, ApiError> {
    InternalRequest::from_headers(|name| req.headers().get(name).ok().flatten())
}

fn stub(env: &Env, target: &Target) -> worker::Result<Stub> {
    match target {
        Target::Room(address, _) => {
            env.durable_object(ROOMS_BINDING)?.id_from_name(&address.shard_key())?.get_stub()
        }
        Target::Shard(address, shard, _) => {
            env.durable_object(COUNTERS_BINDING)?.id_from_name(&address.shard_key(*shard))?.get_stub()
        }
    }
}

/// Forwards a client's request (a WebSocket upgrade, a query) to its object, with the internal
/// headers set and any a client sent under those names removed.
pub async fn forward(env: &Env, request: &InternalRequest, req: &Request) -> worker::Result<Response> {
    let mut forwarded = req.clone_mut()?;
    let headers = forwarded.headers_mut()?;
    for name in headers::ALL {
        headers.delete(name)?;
    }
    for (name, value) in request.to_headers() {
        headers.set(name, &value)?;
    }
    stub(env, &request.target)?.fetch_with_request(forwarded).await
}

/// Sends an internal request with an optional JSON body to its object.
pub async fn call(env: &Env, request: &InternalRequest, body: Option<String>) -> worker::Result<Response> {
    let headers = worker::Headers::new();
    for (name, value) in request.to_headers() {
        headers.set(name, &value)?;
    }
    let mut init = RequestInit::new();
    init.with_headers(headers).with_method(if body.is_some() { Method::Post } else { Method::Get });
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let req = Request::new_with_init("https://object.internal/", &init)?;
    stub(env, &request.target)?.fetch_with_request(req).await
}

/// Sends an internal request and reads its JSON answer; an error answer comes back as the error.
pub async fn call_json<T: serde::de::DeserializeOwned>(
    env: &Env,
    request: &InternalRequest,
    body: Option<String>,
) -> Result<T, ApiError> {
    let mut response = call(env, request, body).await.map_err(internal)?;
    if response.status_code() != 200 {
        let error: edgeroom_protocol::HttpError = response.json().await.map_err(internal)?;
        return Err(ApiError::new(error.error.code, error.error.message));
    }
    response.json().await.map_err(internal)
}

/// Sends one frame; a socket that is already closing just misses it (its client resumes).
pub fn send_frame(ws: &WebSocket, frame: &WireFrame) -> bool {
    send_shared(ws, &SharedFrame::new(frame))
}

#[worker::wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    /// A WebSocket, seen only for `send` with a value already in JavaScript.
    type JsSocket;

    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_value(
        this: &JsSocket,
        data: &worker::wasm_bindgen::JsValue,
    ) -> Result<(), worker::wasm_bindgen::JsValue>;
}

/// A frame turned into a JavaScript value once, for many sockets: passing Rust text to
/// `WebSocket.send` would decode it from wasm memory again for every socket.
pub struct SharedFrame {
    value: worker::wasm_bindgen::JsValue,
    len: usize,
}

impl SharedFrame {
    /// The frame as a JavaScript string (text) or `Uint8Array` (binary).
    pub fn new(frame: &WireFrame) -> Self {
        let value = match frame {
            WireFrame::Text(text) => worker::wasm_bindgen::JsValue::from_str(text),
            WireFrame::Binary(bytes) => js_sys::Uint8Array::from(bytes.as_slice()).into(),
        };
        Self { value, len: frame.len() }
    }

    /// The frame's size in bytes.
    pub fn bytes(&self) -> usize {
        self.len
    }
}

/// Sends a shared frame; a socket that is already closing just misses it (its client resumes).
pub fn send_shared(ws: &WebSocket, frame: &SharedFrame) -> bool {
    let socket: &worker::web_sys::WebSocket = ws.as_ref();
    socket.unchecked_ref::<JsSocket>().send_value(&frame.value).is_ok()
}

/// Closes a socket with a code and reason (already closed sockets are left alone).
pub fn close(ws: &WebSocket, code: u16, reason: &str) {
    let _ = ws.close(Some(code), Some(reason));
}

/// The close code to echo for a client's close: 1005 and 1006 are reserved and may not be sent.
pub fn echo_close_code(code: usize) -> u16 {
    u16::try_from(code)
        .ok()
        .filter(|c| (1000..5000).contains(c) && *c != 1005 && *c != 1006)
        .unwrap_or(edgeroom_protocol::close_code::NORMAL)
}

/// When the runtime last answered this socket's heartbeat `ping` for us, if ever.
pub fn auto_response_ms(state: &State, ws: &WebSocket) -> Option<u64> {
    let raw: &worker::wasm_bindgen::JsValue = state.as_raw().as_ref();
    let method = js_sys::Reflect::get(raw, &"getWebSocketAutoResponseTimestamp".into()).ok()?;
    let method = method.dyn_into::<js_sys::Function>().ok()?;
    let socket: &worker::wasm_bindgen::JsValue = ws.as_ref().as_ref();
    let date = method.call1(raw, socket).ok()?.dyn_into::<js_sys::Date>().ok()?;
    let ms = date.get_time();
    (ms.is_finite() && ms >= 0.0).then_some(ms as u64)
}

/// Makes sure the object's alarm fires by `at_ms` (an earlier pending alarm is kept).
pub async fn arm_alarm(state: &State, at_ms: u64) {
    let storage = state.storage();
    if let Ok(Some(pending)) = storage.get_alarm().await {
        if u64::try_from(pending).is_ok_and(|pending| pending <= at_ms) {
            return;
        }
    }
    let delay = std::time::Duration::from_millis(at_ms.saturating_sub(now_ms()));
    if let Err(error) = storage.set_alarm(delay).await {
        tracing::error!(%error, "setting the alarm failed");
    }
}

/// Milliseconds since the Unix epoch (`std::time` panics on wasm32).
pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// A random number, for ids that must differ between instances.
pub fn entropy() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// The request's URL split into host, path and query, without the `url` crate (see
/// [`RequestUrl`]): `worker::Request::url` would link its IDNA tables into the Worker.
pub fn request_url(req: &Request) -> RequestUrl {
    RequestUrl::parse(req.inner().url())
}
