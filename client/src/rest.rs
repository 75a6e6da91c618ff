//! [`RestClient`]: the REST reads and writes and the admin API.

use edgeroom_auth::{TokenRequest, TokenResponse};
use edgeroom_protocol::{
    AdminActionResult, Body, CounterAddRequest, CounterResetRequest, CounterSetRequest, CounterView,
    CounterWriteResult, HistoryPage, KickRequest, PublishRequest, PublishResult, RestoreRequest,
    RestoreResult, RoomAddress, RoomRecord, RoomView, Route, SnapshotRecord,
};
use reqwest::{RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::connection::http_error;
use crate::options::{counter_path, http_url, parse_base};
use crate::Error;

/// An HTTP client for one service. Room and counter routes use the token; admin routes use the
/// admin key.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    admin_key: Option<String>,
}

impl RestClient {
    /// A client for the service at `base` (for example `http://127.0.0.1:8787`).
    pub fn new(base: impl Into<String>) -> Result<Self, Error> {
        let base = base.into();
        parse_base(&base)?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("edgeroom-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Network(e.to_string()))?;
        Ok(Self { http, base, token: None, admin_key: None })
    }

    /// Uses `token` for room and counter routes.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Uses `key` for the admin API.
    pub fn with_admin_key(mut self, key: Option<String>) -> Self {
        self.admin_key = key;
        self
    }

    /// `GET /rooms/{room}`: the room's state and members; `strong` asks the room itself instead of
    /// the read model (which may be a few seconds old).
    pub async fn room(&self, tenant: &str, room: &str, strong: bool) -> Result<RoomView, Error> {
        let mut url = self.url(&Route::RoomState(room_address(tenant, room)?))?;
        if strong {
            url.query_pairs_mut().append_pair("consistency", "strong");
        }
        self.send(self.authorized(self.http.get(url))).await
    }

    /// `GET /rooms/{room}/history`: up to `limit` events after `after`.
    pub async fn history(
        &self,
        tenant: &str,
        room: &str,
        after: u64,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        let mut url = self.url(&Route::RoomHistory(room_address(tenant, room)?))?;
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &limit.to_string());
        self.send(self.authorized(self.http.get(url))).await
    }

    /// `POST /rooms/{room}/messages`: publishes from the server side; a retry with the same
    /// `op_id` is applied once.
    pub async fn publish(
        &self,
        tenant: &str,
        room: &str,
        body: Body,
        op_id: Uuid,
        topic: Option<String>,
    ) -> Result<PublishResult, Error> {
        let url = self.url(&Route::RoomMessages(room_address(tenant, room)?))?;
        let request = PublishRequest { body, op_id: Some(op_id), topic };
        self.send(self.authorized(self.http.post(url)).json(&request)).await
    }

    /// `GET /counters/{name}`: the value summed over the shards; `strong` sums them now.
    pub async fn counter(&self, tenant: &str, name: &str, strong: bool) -> Result<CounterView, Error> {
        let mut url = http_url(&self.base, &counter_path(tenant, name, "")?)?;
        if strong {
            url.query_pairs_mut().append_pair("consistency", "strong");
        }
        self.send(self.authorized(self.http.get(url))).await
    }

    /// `POST /counters/{name}/add`.
    pub async fn counter_add(
        &self,
        tenant: &str,
        name: &str,
        delta: i64,
        op_id: Uuid,
    ) -> Result<CounterWriteResult, Error> {
        let url = http_url(&self.base, &counter_path(tenant, name, "/add")?)?;
        self.post(url, &CounterAddRequest { delta, op_id: Some(op_id) }).await
    }

    /// `POST /counters/{name}/set`.
    pub async fn counter_set(
        &self,
        tenant: &str,
        name: &str,
        value: i64,
        op_id: Uuid,
    ) -> Result<CounterWriteResult, Error> {
        let url = http_url(&self.base, &counter_path(tenant, name, "/set")?)?;
        self.post(url, &CounterSetRequest { value, op_id: Some(op_id) }).await
    }

    /// `POST /counters/{name}/reset`.
    pub async fn counter_reset(
        &self,
        tenant: &str,
        name: &str,
        op_id: Uuid,
    ) -> Result<CounterWriteResult, Error> {
        let url = http_url(&self.base, &counter_path(tenant, name, "/reset")?)?;
        self.post(url, &CounterResetRequest { op_id: Some(op_id) }).await
    }

    /// Admin: mints a token for `tenant`.
    pub async fn mint_token(&self, tenant: &str, request: &TokenRequest) -> Result<TokenResponse, Error> {
        let url = self.url(&Route::AdminToken(tenant_name(tenant)?))?;
        self.send(self.admin(self.http.post(url)).json(request)).await
    }

    /// Admin: the tenant's rooms, from the index.
    pub async fn rooms(&self, tenant: &str) -> Result<Vec<RoomRecord>, Error> {
        let url = self.url(&Route::AdminRooms(tenant_name(tenant)?))?;
        self.send(self.admin(self.http.get(url))).await
    }

    /// Admin: a room's live state.
    pub async fn admin_room(&self, tenant: &str, room: &str) -> Result<RoomView, Error> {
        let url = self.url(&Route::AdminRoom(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.get(url))).await
    }

    /// Admin: a room's snapshots.
    pub async fn snapshots(&self, tenant: &str, room: &str) -> Result<Vec<SnapshotRecord>, Error> {
        let url = self.url(&Route::AdminSnapshots(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.get(url))).await
    }

    /// Admin: restores snapshot `seq` (the latest when `None`); connected clients get a gap.
    pub async fn restore(&self, tenant: &str, room: &str, seq: Option<u64>) -> Result<RestoreResult, Error> {
        let url = self.url(&Route::AdminRestore(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.post(url)).json(&RestoreRequest { seq })).await
    }

    /// Admin: closes one connection of the room (close code 4013; the SDK does not reconnect).
    pub async fn kick(
        &self,
        tenant: &str,
        room: &str,
        connection_id: u64,
    ) -> Result<AdminActionResult, Error> {
        let url = self.url(&Route::AdminKick(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.post(url)).json(&KickRequest { connection_id })).await
    }

    /// Admin: closes every connection of the room (close code 4014; the SDK does not reconnect).
    pub async fn close_room(&self, tenant: &str, room: &str) -> Result<AdminActionResult, Error> {
        let url = self.url(&Route::AdminClose(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.post(url))).await
    }

    /// Admin: flushes the room now (snapshot to R2, index to D1, read model to KV).
    pub async fn flush(&self, tenant: &str, room: &str) -> Result<AdminActionResult, Error> {
        let url = self.url(&Route::AdminFlush(room_address(tenant, room)?))?;
        self.send(self.admin(self.http.post(url))).await
    }

    fn url(&self, route: &Route) -> Result<Url, Error> {
        http_url(&self.base, &route.path())
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn admin(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.admin_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, url: Url, body: &B) -> Result<T, Error> {
        self.send(self.authorized(self.http.post(url)).json(body)).await
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let response = request.send().await.map_err(|e| Error::Network(without_url(&e)))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| Error::Network(without_url(&e)))?;
        if !(200..300).contains(&status) {
            return Err(http_error(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::MalformedFrame(format!("unexpected HTTP {status} body: {e}")))
    }
}

fn without_url(error: &reqwest::Error) -> String {
    // reqwest's message includes the URL, which may carry a token in its query.
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

fn room_address(tenant: &str, room: &str) -> Result<RoomAddress, Error> {
    RoomAddress::new(tenant, room).map_err(|e| Error::InvalidOptions(e.to_string()))
}

fn tenant_name(tenant: &str) -> Result<String, Error> {
    edgeroom_protocol::validate_name("tenant", tenant).map_err(|e| Error::InvalidOptions(e.to_string()))?;
    Ok(tenant.to_owned())
}
