//! The HTTP routes of edgeroom: parsed by the router, built by clients.

use crate::{validate_name, CounterAddress, NameError, RoomAddress};

/// An HTTP method the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

/// Every route of the API (`docs/openapi.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`
    Health,
    /// `GET /v1/t/{tenant}/rooms/{room}/ws`: WebSocket into a room.
    RoomSocket(RoomAddress),
    /// `GET /v1/t/{tenant}/rooms/{room}`: the room's state.
    RoomState(RoomAddress),
    /// `GET /v1/t/{tenant}/rooms/{room}/history`: a page of history.
    RoomHistory(RoomAddress),
    /// `POST /v1/t/{tenant}/rooms/{room}/messages`: server-side publish.
    RoomMessages(RoomAddress),
    /// `GET /v1/t/{tenant}/counters/{name}`: a counter's value.
    CounterState(CounterAddress),
    /// `GET /v1/t/{tenant}/counters/{name}/ws`: live counter subscription.
    CounterSocket(CounterAddress),
    /// `POST /v1/t/{tenant}/counters/{name}/add`
    CounterAdd(CounterAddress),
    /// `POST /v1/t/{tenant}/counters/{name}/set`
    CounterSet(CounterAddress),
    /// `POST /v1/t/{tenant}/counters/{name}/reset`
    CounterReset(CounterAddress),
    /// `POST /v1/t/{tenant}/counters/{name}/shards`
    CounterShards(CounterAddress),
    /// `POST /v1/admin/t/{tenant}/tokens`: mint a token (admin key).
    AdminToken(String),
    /// `GET /v1/admin/t/{tenant}/rooms/{room}`: the room's live state (admin key).
    AdminRoom(RoomAddress),
    /// `GET /v1/admin/t/{tenant}/rooms`: the tenant's rooms from the D1 index (admin key).
    AdminRooms(String),
    /// `GET /v1/admin/t/{tenant}/rooms/{room}/snapshots`: the room's snapshots (admin key).
    AdminSnapshots(RoomAddress),
    /// `POST /v1/admin/t/{tenant}/rooms/{room}/restore`: restore a snapshot (admin key).
    AdminRestore(RoomAddress),
    /// `POST /v1/admin/t/{tenant}/rooms/{room}/faults`: make the room's flushes fail, for tests
    /// (only in builds with the `fault-injection` feature; 404 otherwise).
    AdminFaults(RoomAddress),
    /// `GET /v1/admin/t/{tenant}`: the tenant's overview (rooms, activity, cost).
    AdminTenant(String),
    /// `GET /v1/admin/t/{tenant}/rooms/{room}/metrics`: live metrics, members and history.
    AdminRoomMetrics(RoomAddress),
    /// `POST /v1/admin/t/{tenant}/rooms/{room}/kick`: close one connection (4013).
    AdminKick(RoomAddress),
    /// `POST /v1/admin/t/{tenant}/rooms/{room}/close`: close every connection (4014).
    AdminClose(RoomAddress),
    /// `POST /v1/admin/t/{tenant}/rooms/{room}/flush`: flush now.
    AdminFlush(RoomAddress),
    /// `GET /v1/admin/t/{tenant}/rooms/{room}/tail`: a read-only WebSocket of the room's events.
    AdminTail(RoomAddress),
    /// `GET /v1/admin/t/{tenant}/counters`: the tenant's counters.
    AdminCounters(String),
    /// `POST /v1/admin/t/{tenant}/counters/{name}/reset`: reset a counter.
    AdminCounterReset(CounterAddress),
    /// `GET /v1/admin/t/{tenant}/counters/{name}/metrics`: live metrics (summed over the
    /// shards), history and cost.
    AdminCounterMetrics(CounterAddress),
    /// `GET /v1/admin/t/{tenant}/webhooks`: the tenant's webhook endpoints.
    AdminWebhooks(String),
    /// `POST /v1/admin/t/{tenant}/webhooks/create`: add an endpoint.
    AdminWebhookCreate(String),
    /// `POST /v1/admin/t/{tenant}/webhooks/{id}/delete`: remove an endpoint.
    AdminWebhookDelete(String, String),
    /// `GET /v1/admin/t/{tenant}/dead-letters`: export batches that failed every attempt.
    AdminDeadLetters(String),
    /// `POST /v1/admin/t/{tenant}/dead-letters/replay`: queue them again.
    AdminDeadLetterReplay(String),
}

/// Why a path is not a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route has this shape.
    #[error("no route for {0}")]
    NotFound(String),
    /// The shape fits but a name breaks the naming rules.
    #[error(transparent)]
    BadName(#[from] NameError),
}

impl Route {
    /// Matches a URL path (without query) and validates the names in it.
    pub fn parse(path: &str) -> Result<Self, RouteError> {
        let not_found = || RouteError::NotFound(path.to_owned());
        let segments: Vec<&str> = path.strip_prefix('/').ok_or_else(not_found)?.split('/').collect();
        let room = |tenant: &str, room: &str| RoomAddress::new(tenant, room);
        let counter = |tenant: &str, name: &str| CounterAddress::new(tenant, name);
        let tenant_name = |tenant: &str| validate_name("tenant", tenant).map(|()| tenant.to_owned());
        Ok(match segments.as_slice() {
            ["healthz"] => Self::Health,
            ["v1", "t", tenant, "rooms", name, "ws"] => Self::RoomSocket(room(tenant, name)?),
            ["v1", "t", tenant, "rooms", name] => Self::RoomState(room(tenant, name)?),
            ["v1", "t", tenant, "rooms", name, "history"] => Self::RoomHistory(room(tenant, name)?),
            ["v1", "t", tenant, "rooms", name, "messages"] => Self::RoomMessages(room(tenant, name)?),
            ["v1", "t", tenant, "counters", name] => Self::CounterState(counter(tenant, name)?),
            ["v1", "t", tenant, "counters", name, "ws"] => Self::CounterSocket(counter(tenant, name)?),
            ["v1", "t", tenant, "counters", name, "add"] => Self::CounterAdd(counter(tenant, name)?),
            ["v1", "t", tenant, "counters", name, "set"] => Self::CounterSet(counter(tenant, name)?),
            ["v1", "t", tenant, "counters", name, "reset"] => Self::CounterReset(counter(tenant, name)?),
            ["v1", "t", tenant, "counters", name, "shards"] => Self::CounterShards(counter(tenant, name)?),
            ["v1", "admin", "t", tenant, "tokens"] => {
                validate_name("tenant", tenant)?;
                Self::AdminToken((*tenant).to_owned())
            }
            ["v1", "admin", "t", tenant, "rooms", name] => Self::AdminRoom(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "rooms"] => {
                validate_name("tenant", tenant)?;
                Self::AdminRooms((*tenant).to_owned())
            }
            ["v1", "admin", "t", tenant, "rooms", name, "snapshots"] => {
                Self::AdminSnapshots(room(tenant, name)?)
            }
            ["v1", "admin", "t", tenant, "rooms", name, "restore"] => Self::AdminRestore(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "rooms", name, "faults"] => Self::AdminFaults(room(tenant, name)?),
            ["v1", "admin", "t", tenant] => {
                validate_name("tenant", tenant)?;
                Self::AdminTenant((*tenant).to_owned())
            }
            ["v1", "admin", "t", tenant, "rooms", name, "metrics"] => {
                Self::AdminRoomMetrics(room(tenant, name)?)
            }
            ["v1", "admin", "t", tenant, "rooms", name, "kick"] => Self::AdminKick(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "rooms", name, "close"] => Self::AdminClose(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "rooms", name, "flush"] => Self::AdminFlush(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "rooms", name, "tail"] => Self::AdminTail(room(tenant, name)?),
            ["v1", "admin", "t", tenant, "counters"] => {
                validate_name("tenant", tenant)?;
                Self::AdminCounters((*tenant).to_owned())
            }
            ["v1", "admin", "t", tenant, "counters", name, "reset"] => {
                Self::AdminCounterReset(counter(tenant, name)?)
            }
            ["v1", "admin", "t", tenant, "counters", name, "metrics"] => {
                Self::AdminCounterMetrics(counter(tenant, name)?)
            }
            ["v1", "admin", "t", tenant, "webhooks"] => Self::AdminWebhooks(tenant_name(tenant)?),
            ["v1", "admin", "t", tenant, "webhooks", "create"] => {
                Self::AdminWebhookCreate(tenant_name(tenant)?)
            }
            ["v1", "admin", "t", tenant, "webhooks", id, "delete"] => {
                validate_name("webhook", id)?;
                Self::AdminWebhookDelete(tenant_name(tenant)?, (*id).to_owned())
            }
            ["v1", "admin", "t", tenant, "dead-letters"] => Self::AdminDeadLetters(tenant_name(tenant)?),
            ["v1", "admin", "t", tenant, "dead-letters", "replay"] => {
                Self::AdminDeadLetterReplay(tenant_name(tenant)?)
            }
            _ => return Err(not_found()),
        })
    }

    /// The tenant and the room or counter name a token must grant, for the routes that take a
    /// token (admin routes and `/healthz` take none).
    pub fn token_scope(&self) -> Option<(&str, &str)> {
        match self {
            Self::RoomSocket(a) | Self::RoomState(a) | Self::RoomHistory(a) | Self::RoomMessages(a) => {
                Some((a.tenant(), a.room()))
            }
            Self::CounterState(a)
            | Self::CounterSocket(a)
            | Self::CounterAdd(a)
            | Self::CounterSet(a)
            | Self::CounterReset(a)
            | Self::CounterShards(a) => Some((a.tenant(), a.name())),
            Self::Health
            | Self::AdminToken(_)
            | Self::AdminRoom(_)
            | Self::AdminRooms(_)
            | Self::AdminSnapshots(_)
            | Self::AdminRestore(_)
            | Self::AdminFaults(_)
            | Self::AdminTenant(_)
            | Self::AdminRoomMetrics(_)
            | Self::AdminKick(_)
            | Self::AdminClose(_)
            | Self::AdminFlush(_)
            | Self::AdminTail(_)
            | Self::AdminCounters(_)
            | Self::AdminCounterReset(_)
            | Self::AdminCounterMetrics(_)
            | Self::AdminWebhooks(_)
            | Self::AdminWebhookCreate(_)
            | Self::AdminWebhookDelete(..)
            | Self::AdminDeadLetters(_)
            | Self::AdminDeadLetterReplay(_) => None,
        }
    }

    /// The one method this route answers (besides CORS preflight `OPTIONS`).
    pub fn method(&self) -> Method {
        match self {
            Self::RoomMessages(_)
            | Self::AdminToken(_)
            | Self::AdminRestore(_)
            | Self::AdminFaults(_)
            | Self::AdminKick(_)
            | Self::AdminClose(_)
            | Self::AdminFlush(_)
            | Self::AdminCounterReset(_)
            | Self::AdminWebhookCreate(_)
            | Self::AdminWebhookDelete(..)
            | Self::AdminDeadLetterReplay(_)
            | Self::CounterAdd(_)
            | Self::CounterSet(_)
            | Self::CounterReset(_)
            | Self::CounterShards(_) => Method::Post,
            _ => Method::Get,
        }
    }

    /// The query parameters this route understands; any other is refused, so a typo such as
    /// `resume_form=5` fails loudly instead of silently not resuming.
    pub fn query_params(&self) -> &'static [&'static str] {
        match self {
            Self::Health
            | Self::AdminToken(_)
            | Self::AdminRoom(_)
            | Self::AdminSnapshots(_)
            | Self::AdminRestore(_)
            | Self::AdminFaults(_)
            | Self::AdminTenant(_)
            | Self::AdminKick(_)
            | Self::AdminClose(_)
            | Self::AdminFlush(_)
            | Self::AdminCounters(_)
            | Self::AdminCounterReset(_)
            | Self::AdminWebhooks(_)
            | Self::AdminWebhookCreate(_)
            | Self::AdminWebhookDelete(..)
            | Self::AdminDeadLetters(_)
            | Self::AdminDeadLetterReplay(_) => &[],
            Self::AdminRooms(_) => &["sort", "q", "limit", "offset"],
            Self::AdminRoomMetrics(_) | Self::AdminCounterMetrics(_) => &["window_ms"],
            // Browsers cannot set headers on a WebSocket: the tail also takes the key here.
            Self::AdminTail(_) => &["format", "resume_from", "epoch", "admin_key"],
            Self::RoomSocket(_) => &["format", "resume_from", "epoch", "handshake", "token"],
            Self::RoomState(_) => &["consistency", "token"],
            Self::RoomHistory(_) => &["after", "limit", "token"],
            Self::RoomMessages(_)
            | Self::CounterAdd(_)
            | Self::CounterSet(_)
            | Self::CounterReset(_)
            | Self::CounterShards(_) => &["token"],
            Self::CounterSocket(_) => &["format", "token"],
            Self::CounterState(_) => &["consistency", "token"],
        }
    }

    /// The route's path.
    pub fn path(&self) -> String {
        let room = |a: &RoomAddress, suffix: &str| format!("/v1/t/{}/rooms/{}{suffix}", a.tenant(), a.room());
        let counter =
            |a: &CounterAddress, suffix: &str| format!("/v1/t/{}/counters/{}{suffix}", a.tenant(), a.name());
        match self {
            Self::Health => "/healthz".to_owned(),
            Self::RoomSocket(a) => room(a, "/ws"),
            Self::RoomState(a) => room(a, ""),
            Self::RoomHistory(a) => room(a, "/history"),
            Self::RoomMessages(a) => room(a, "/messages"),
            Self::CounterState(a) => counter(a, ""),
            Self::CounterSocket(a) => counter(a, "/ws"),
            Self::CounterAdd(a) => counter(a, "/add"),
            Self::CounterSet(a) => counter(a, "/set"),
            Self::CounterReset(a) => counter(a, "/reset"),
            Self::CounterShards(a) => counter(a, "/shards"),
            Self::AdminToken(tenant) => format!("/v1/admin/t/{tenant}/tokens"),
            Self::AdminRoom(a) => format!("/v1/admin/t/{}/rooms/{}", a.tenant(), a.room()),
            Self::AdminRooms(tenant) => format!("/v1/admin/t/{tenant}/rooms"),
            Self::AdminSnapshots(a) => format!("/v1/admin/t/{}/rooms/{}/snapshots", a.tenant(), a.room()),
            Self::AdminRestore(a) => format!("/v1/admin/t/{}/rooms/{}/restore", a.tenant(), a.room()),
            Self::AdminFaults(a) => format!("/v1/admin/t/{}/rooms/{}/faults", a.tenant(), a.room()),
            Self::AdminTenant(tenant) => format!("/v1/admin/t/{tenant}"),
            Self::AdminRoomMetrics(a) => format!("/v1/admin/t/{}/rooms/{}/metrics", a.tenant(), a.room()),
            Self::AdminKick(a) => format!("/v1/admin/t/{}/rooms/{}/kick", a.tenant(), a.room()),
            Self::AdminClose(a) => format!("/v1/admin/t/{}/rooms/{}/close", a.tenant(), a.room()),
            Self::AdminFlush(a) => format!("/v1/admin/t/{}/rooms/{}/flush", a.tenant(), a.room()),
            Self::AdminTail(a) => format!("/v1/admin/t/{}/rooms/{}/tail", a.tenant(), a.room()),
            Self::AdminCounters(tenant) => format!("/v1/admin/t/{tenant}/counters"),
            Self::AdminCounterReset(a) => format!("/v1/admin/t/{}/counters/{}/reset", a.tenant(), a.name()),
            Self::AdminCounterMetrics(a) => {
                format!("/v1/admin/t/{}/counters/{}/metrics", a.tenant(), a.name())
            }
            Self::AdminWebhooks(tenant) => format!("/v1/admin/t/{tenant}/webhooks"),
            Self::AdminWebhookCreate(tenant) => format!("/v1/admin/t/{tenant}/webhooks/create"),
            Self::AdminWebhookDelete(tenant, id) => format!("/v1/admin/t/{tenant}/webhooks/{id}/delete"),
            Self::AdminDeadLetters(tenant) => format!("/v1/admin/t/{tenant}/dead-letters"),
            Self::AdminDeadLetterReplay(tenant) => format!("/v1/admin/t/{tenant}/dead-letters/replay"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_parses_back_from_its_path() {
        let lobby = RoomAddress::new("acme", "lobby").unwrap();
        let likes = CounterAddress::new("acme", "likes").unwrap();
        let routes = [
            Route::Health,
            Route::RoomSocket(lobby.clone()),
            Route::RoomState(lobby.clone()),
            Route::RoomHistory(lobby.clone()),
            Route::RoomMessages(lobby.clone()),
            Route::CounterState(likes.clone()),
            Route::CounterSocket(likes.clone()),
            Route::CounterAdd(likes.clone()),
            Route::CounterSet(likes.clone()),
            Route::CounterReset(likes.clone()),
            Route::CounterShards(likes.clone()),
            Route::AdminToken("acme".into()),
            Route::AdminRoom(lobby.clone()),
            Route::AdminRooms("acme".into()),
            Route::AdminSnapshots(lobby.clone()),
            Route::AdminRestore(lobby.clone()),
            Route::AdminFaults(lobby.clone()),
            Route::AdminTenant("acme".into()),
            Route::AdminRoomMetrics(lobby.clone()),
            Route::AdminKick(lobby.clone()),
            Route::AdminClose(lobby.clone()),
            Route::AdminFlush(lobby.clone()),
            Route::AdminTail(lobby),
            Route::AdminCounters("acme".into()),
            Route::AdminCounterReset(likes.clone()),
            Route::AdminCounterMetrics(likes.clone()),
            Route::AdminWebhooks("acme".into()),
            Route::AdminWebhookCreate("acme".into()),
            Route::AdminWebhookDelete("acme".into(), "wh_1".into()),
            Route::AdminDeadLetters("acme".into()),
            Route::AdminDeadLetterReplay("acme".into()),
        ];
        for route in routes {
            assert_eq!(Route::parse(&route.path()), Ok(route.clone()));
        }
    }

    #[test]
    fn unknown_shapes_and_bad_names() {
        for path in
            ["/", "/v1", "/v1/t/acme/rooms", "/v1/t/acme/rooms/a/b/c", "healthz", "/v1/t/acme/rooms/x/ws/"]
        {
            assert!(matches!(Route::parse(path), Err(RouteError::NotFound(_))), "{path}");
        }
        assert!(matches!(Route::parse("/v1/t/acme/rooms/a%20b/ws"), Err(RouteError::BadName(_))));
        assert!(matches!(Route::parse("/v1/t//rooms/x"), Err(RouteError::BadName(_))));
        assert_eq!(Route::parse("/v1/t/a/rooms/b/messages").unwrap().method(), Method::Post);
        assert!(Route::parse("/v1/t/a/rooms/b/ws").unwrap().query_params().contains(&"resume_from"));
    }
}
