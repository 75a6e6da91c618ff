//! What operators see and do through the admin API (after `admin.rs` checked the key): the tenant
//! overview with its cost, rooms sorted and paged, a room's live metrics with its history and
//! cost, closing connections, flushing now, a read-only tail of a room's events, and counters.

use edgeroom_durable::object::d1::{database, prepare};
use edgeroom_durable::object::http::{call, call_json, forward, read_json, request_url, require_upgrade};
use edgeroom_durable::object::RemoteShards;
use edgeroom_durable::pricing::{Estimate, Units};
use edgeroom_durable::{index, ApiError, InternalRequest, Metrics, RoomLive, RoomOp, ShardOp, ShardWrite};
use edgeroom_protocol::{
    AdminActionResult, CounterAddress, CounterOp, KickRequest, Right, Rights, RoomAddress, RoomRecord,
};
use serde::{Deserialize, Serialize};
use worker::{Env, Request, Response};

use crate::internal;

/// The default and largest window of history and cost figures: a day.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn admin(address: &RoomAddress, op: RoomOp) -> InternalRequest {
    InternalRequest::room(address.clone(), op, Rights::ALL, Some("admin".to_owned()))
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn json<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    Response::from_json(value).map_err(internal)
}

/// A query parameter parsed as a number within `range`.
fn number_param(req: &Request, name: &str, default: u64, max: u64) -> Result<u64, ApiError> {
    match request_url(req).query_param(name) {
        None => Ok(default),
        Some(value) => {
            value.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
                ApiError::bad_request(format!("{name} is a number up to {max}, not {value:?}"))
            })
        }
    }
}

/// One row of the metrics time series.
#[derive(Debug, Serialize, Deserialize)]
struct SeriesPoint {
    at_ms: f64,
    metrics: String,
}

/// A point of a room's metrics history, as the console charts it.
#[derive(Debug, Serialize)]
struct Point {
    at_ms: u64,
    metrics: Metrics,
}

/// What a room cost over a window.
#[derive(Debug, Serialize)]
struct Cost {
    window_ms: u64,
    units: Units,
    per_1000_deliveries: Option<Units>,
    estimate: Estimate,
}

impl Cost {
    fn of(activity: &Metrics, window_ms: u64) -> Self {
        let units = Units::of(activity);
        let per_1000_deliveries =
            (activity.deliveries > 0).then(|| units.scaled(1000.0 / activity.deliveries as f64));
        Self { window_ms, estimate: Estimate::project(&units, window_ms), units, per_1000_deliveries }
    }
}

async fn series(env: &Env, statement: &index::Statement) -> Result<Vec<Point>, ApiError> {
    let rows: Vec<SeriesPoint> = prepare(&database(env).map_err(internal)?, statement)
        .map_err(internal)?
        .all()
        .await
        .and_then(|result| result.results())
        .map_err(internal)?;
    Ok(rows
        .into_iter()
        .map(|row| Point {
            at_ms: row.at_ms as u64,
            metrics: serde_json::from_str(&row.metrics).unwrap_or_default(),
        })
        .collect())
}

/// The activity of a metrics series, summed.
fn sum(points: &[Point]) -> Metrics {
    let mut activity = Metrics::default();
    for point in points {
        activity.add(&point.metrics);
    }
    activity
}

/// `GET /v1/admin/t/{tenant}`: rooms, the last day's activity summed over rooms and counters,
/// and its cost.
pub async fn tenant(env: &Env, tenant: &str) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    struct Count {
        count: f64,
    }
    let db = database(env).map_err(internal)?;
    let count: Option<Count> =
        prepare(&db, &index::room_count(tenant)).map_err(internal)?.first(None).await.map_err(internal)?;
    let from = now_ms().saturating_sub(DAY_MS);
    let mut activity = sum(&series(env, &index::tenant_series(tenant, from)).await?);
    let counter_activity = sum(&series(env, &index::tenant_counter_series(tenant, from)).await?);
    activity.add(&counter_activity);
    #[derive(Serialize)]
    struct Overview {
        tenant: String,
        rooms: u64,
        activity: Metrics,
        counter_activity: Metrics,
        cost: Cost,
    }
    json(&Overview {
        tenant: tenant.to_owned(),
        rooms: count.map_or(0, |c| c.count as u64),
        cost: Cost::of(&activity, DAY_MS),
        activity,
        counter_activity,
    })
}

/// `GET /v1/admin/t/{tenant}/rooms?sort=&q=&limit=&offset=`: a page of the tenant's rooms.
pub async fn rooms(env: &Env, tenant: &str, req: &Request) -> Result<Response, ApiError> {
    let url = request_url(req);
    let param = |name: &str| url.query_param(name).map(|v| v.into_owned());
    let order = match param("sort") {
        None => index::RoomOrder::Activity,
        Some(name) => index::RoomOrder::from_name(&name)
            .ok_or_else(|| ApiError::bad_request("sort is activity, name, members or size"))?,
    };
    let search = param("q").unwrap_or_default();
    if search.len() > 128 {
        return Err(ApiError::bad_request("q is at most 128 characters"));
    }
    let limit = number_param(req, "limit", 100, 1000)?.max(1) as u32;
    let offset = number_param(req, "offset", 0, 1_000_000)? as u32;
    #[derive(Deserialize)]
    struct Row {
        room: String,
        seq: String,
        members: f64,
        last_activity_ms: f64,
        last_snapshot_key: Option<String>,
        last_snapshot_bytes: Option<f64>,
    }
    let statement = index::rooms_of(tenant, &search, order, limit, offset);
    let rows: Vec<Row> = prepare(&database(env).map_err(internal)?, &statement)
        .map_err(internal)?
        .all()
        .await
        .and_then(|result| result.results())
        .map_err(internal)?;
    let records = rows
        .into_iter()
        .map(|row| {
            let seq = row.seq.parse().map_err(|_| {
                tracing::error!(tenant, room = %row.room, seq = %row.seq, "a rooms row has an unreadable seq");
                ApiError::internal(format!("the index row of room {:?} has an unreadable seq", row.room))
            })?;
            Ok(RoomRecord {
                room: row.room,
                seq,
                members: row.members as u64,
                last_activity_ms: row.last_activity_ms as u64,
                last_snapshot_key: row.last_snapshot_key,
                last_snapshot_bytes: row.last_snapshot_bytes.map(|bytes| bytes as u64),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    json(&records)
}

/// `GET /v1/admin/t/{tenant}/rooms/{room}/metrics?window_ms=`: live metrics and members from the
/// room, its history from D1 and the cost of that window.
pub async fn room_metrics(env: &Env, address: &RoomAddress, req: &Request) -> Result<Response, ApiError> {
    let window_ms = number_param(req, "window_ms", 60 * 60 * 1000, DAY_MS)?.max(1000);
    let live: RoomLive = call_json(env, &admin(address, RoomOp::Metrics), None).await?;
    let history = series(env, &index::metrics_series(address, now_ms().saturating_sub(window_ms))).await?;
    let activity = sum(&history);
    #[derive(Serialize)]
    struct RoomMetrics {
        live: RoomLive,
        history: Vec<Point>,
        cost: Cost,
    }
    json(&RoomMetrics { live, history, cost: Cost::of(&activity, window_ms) })
}

/// `POST …/kick`, `…/close`, `…/flush`.
pub async fn room_action(
    env: &Env,
    address: &RoomAddress,
    op: RoomOp,
    mut req: Request,
) -> Result<Response, ApiError> {
    let body = match op {
        RoomOp::Kick => {
            let kick: KickRequest = read_json(&mut req, "kick").await?;
            Some(serde_json::to_string(&kick).map_err(|e| ApiError::internal(e.to_string()))?)
        }
        _ => None,
    };
    let result: AdminActionResult = call_json(env, &admin(address, op), body).await?;
    json(&result)
}

/// `GET …/tail`: a read-only socket into the room (events, no presence, not a member).
pub async fn tail(env: &Env, address: &RoomAddress, req: &Request) -> Result<Response, ApiError> {
    require_upgrade(req)?;
    let request = InternalRequest::room(
        address.clone(),
        RoomOp::Socket,
        Rights::NONE.with(Right::Read),
        Some("admin:tail".to_owned()),
    );
    forward(env, &request, req).await.map_err(internal)
}

/// `GET /v1/admin/t/{tenant}/counters`: the tenant's counters as last flushed to D1.
/// Most counters one listing asks for their live subscribers (one object request each).
const LIVE_COUNTERS: usize = 100;

/// `GET /v1/admin/t/{tenant}/counters`: the tenant's counters as last flushed to D1; `version`
/// counts the writes ever applied; `subscribers` is live (for the first 100).
pub async fn counters(env: &Env, tenant: &str) -> Result<Response, ApiError> {
    #[derive(Deserialize, Serialize)]
    struct Row {
        name: String,
        value: String,
        version: String,
        updated_ms: f64,
        #[serde(default)]
        subscribers: Option<u32>,
    }
    let mut rows: Vec<Row> = prepare(&database(env).map_err(internal)?, &index::counters_of(tenant, 1000))
        .map_err(internal)?
        .all()
        .await
        .and_then(|result| result.results())
        .map_err(internal)?;
    for row in rows.iter_mut().take(LIVE_COUNTERS) {
        let Ok(address) = CounterAddress::new(tenant, &row.name) else { continue };
        // A counter that cannot answer now shows no live figure rather than failing the list.
        row.subscribers = RemoteShards { env, address: &address }.state(0).await.ok().map(|s| s.subscribers);
    }
    json(&rows)
}

/// `GET /v1/admin/t/{tenant}/counters/{name}/metrics?window_ms=`: what the counter's shards
/// counted (asked live, summed), its metrics history from D1 and the cost of that window.
pub async fn counter_metrics(
    env: &Env,
    address: &CounterAddress,
    req: &Request,
) -> Result<Response, ApiError> {
    let window_ms = number_param(req, "window_ms", 60 * 60 * 1000, DAY_MS)?.max(1000);
    let remote = RemoteShards { env, address };
    let home = remote.state(0).await?;
    let shards = home.history.current();
    let mut metrics = Metrics::default();
    for shard in 0..shards {
        metrics.add(&remote.call::<Metrics>(shard, ShardOp::Metrics, None::<&()>).await?);
    }
    let history =
        series(env, &index::counter_metrics_series(address, now_ms().saturating_sub(window_ms))).await?;
    let activity = sum(&history);
    #[derive(Serialize)]
    struct CounterLive {
        name: String,
        shards: u32,
        subscribers: u32,
        metrics: Metrics,
        units: Units,
        generated_ms: u64,
    }
    #[derive(Serialize)]
    struct CounterMetrics {
        live: CounterLive,
        history: Vec<Point>,
        cost: Cost,
    }
    let live = CounterLive {
        name: address.name().to_owned(),
        shards,
        subscribers: home.subscribers,
        units: Units::of(&metrics),
        metrics,
        generated_ms: now_ms(),
    };
    json(&CounterMetrics { live, history, cost: Cost::of(&activity, window_ms) })
}

/// `POST /v1/admin/t/{tenant}/counters/{name}/reset`: resets every shard.
pub async fn reset_counter(env: &Env, address: &CounterAddress) -> Result<Response, ApiError> {
    let op_id = format!("admin-reset-{}-{}", now_ms(), edgeroom_durable::object::http::entropy());
    let write = ShardWrite { op_id, op: CounterOp::Reset };
    let body = serde_json::to_string(&write).map_err(|e| ApiError::internal(e.to_string()))?;
    let request = InternalRequest::shard(address.clone(), 0, ShardOp::ResetAll, Rights::ALL);
    call(env, &request, Some(body)).await.map_err(internal)
}
