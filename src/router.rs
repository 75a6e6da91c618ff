//! Routing: maps a request to a [`Route`], validates names, and forwards room traffic to the
//! room's Durable Object.

use edgeroom_durable::object::{is_websocket_upgrade, json_error, USER_HEADER};
use edgeroom_protocol::{ErrorCode, RoomAddress};
use worker::{Env, Method, Request, Response, Result};

/// Binding name of the room Durable Object namespace (see `wrangler.toml`).
const ROOMS_BINDING: &str = "ROOMS";

/// Every route the router serves.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `GET /healthz`
    Health,
    /// `GET /v1/t/{tenant}/rooms/{room}/ws`
    RoomSocket { tenant: &'a str, room: &'a str },
}

impl<'a> Route<'a> {
    /// Matches a path; `None` when no route has this shape.
    fn parse(path: &'a str) -> Option<Self> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        match segments.as_slice() {
            ["healthz"] => Some(Self::Health),
            ["v1", "t", tenant, "rooms", room, "ws"] => Some(Self::RoomSocket { tenant, room }),
            _ => None,
        }
    }

    /// The only method each route answers.
    fn method(&self) -> Method {
        Method::Get
    }
}

/// Serves one request. Every failure becomes a JSON error response.
pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let url = req.url()?;
    let Some(route) = Route::parse(url.path()) else {
        return json_error(ErrorCode::NotFound, &format!("no route for {}", url.path()));
    };
    if req.method() != route.method() {
        let allowed = route.method().to_string();
        let mut response = json_error(
            ErrorCode::MethodNotAllowed,
            &format!("{} is not allowed here; use {allowed}", req.method()),
        )?;
        response.headers_mut().set("Allow", &allowed)?;
        return Ok(response);
    }
    match route {
        Route::Health => Response::ok("ok"),
        Route::RoomSocket { tenant, room } => {
            let address = match RoomAddress::new(tenant, room) {
                Ok(address) => address,
                Err(name_error) => return json_error(ErrorCode::BadName, &name_error.to_string()),
            };
            if !is_websocket_upgrade(&req)? {
                return json_error(ErrorCode::UpgradeRequired, "this route needs a WebSocket upgrade");
            }
            // Only the router may say who the user is; the object validates the query.
            let mut forwarded = req.clone_mut()?;
            forwarded.headers_mut()?.delete(USER_HEADER)?;
            let stub = env.durable_object(ROOMS_BINDING)?.id_from_name(&address.shard_key())?.get_stub()?;
            stub.fetch_with_request(forwarded).await
        }
    }
}
