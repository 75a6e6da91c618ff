//! The contract between the router and the objects: which object an internal request is for,
//! what it asks, and on whose behalf. It travels as headers the router sets (after stripping any
//! a client sent under the same names); this file is its only encoder and decoder.

use edgeroom_protocol::{CounterAddress, CounterOp, Rights, RoomAddress};
use serde::{Deserialize, Serialize};

use crate::{ApiError, ShardHistory};

/// Binding name of the room Durable Object namespace (see `wrangler.toml`).
pub const ROOMS_BINDING: &str = "ROOMS";
/// Binding name of the counter shard Durable Object namespace.
pub const COUNTERS_BINDING: &str = "COUNTERS";
/// Binding name of the KV namespace holding the JSON read models.
pub const READ_MODEL_BINDING: &str = "READ_MODEL";
/// Binding name of the D1 database (index and metadata).
pub const DB_BINDING: &str = "DB";
/// Binding name of the R2 bucket holding snapshots.
pub const SNAPSHOTS_BINDING: &str = "SNAPSHOTS";

/// The internal headers.
pub mod headers {
    /// The operation (`room.ws`, `counter.write`, …).
    pub const OP: &str = "x-edgeroom-op";
    /// The tenant name.
    pub const TENANT: &str = "x-edgeroom-tenant";
    /// The room or counter name.
    pub const NAME: &str = "x-edgeroom-name";
    /// The counter shard.
    pub const SHARD: &str = "x-edgeroom-shard";
    /// The authenticated user id, if any.
    pub const USER: &str = "x-edgeroom-user";
    /// The caller's rights, as `read,write,…`.
    pub const RIGHTS: &str = "x-edgeroom-rights";
    /// Every internal header, for stripping them from client requests.
    pub const ALL: [&str; 6] = [OP, TENANT, NAME, SHARD, USER, RIGHTS];
}

/// Declares an operation enum with its wire names.
macro_rules! operations {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every operation.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The header value.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $wire,)+ }
            }

            /// Parses the header value.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|op| op.as_str() == name)
            }
        }
    };
}

operations! {
    /// What a room object is asked to do.
    RoomOp {
        /// Accept a WebSocket.
        Socket = "room.ws",
        /// Answer the room's current state (a strong or an admin read).
        State = "room.state",
        /// Answer the room's current state to a REST reader that missed the KV read model: a
        /// read mark, which may make the room write its read model to KV.
        Read = "room.read",
        /// Answer a page of history.
        History = "room.history",
        /// Store a server-side publish (body: `PublishRequest`).
        Publish = "room.publish",
        /// Restore a snapshot (admin; body: `RestoreRequest`).
        Restore = "room.restore",
        /// Set the injected flush faults (test builds only; body: `FaultRequest`).
        Faults = "room.faults",
        /// Live metrics and members (admin).
        Metrics = "room.metrics",
        /// Close one connection (admin; body: `KickRequest`).
        Kick = "room.kick",
        /// Close every connection (admin).
        CloseAll = "room.close",
        /// Flush now (admin).
        Flush = "room.flush",
    }
}

operations! {
    /// What a counter shard object is asked to do.
    ShardOp {
        /// This shard's value, version and (home) shard count.
        Get = "counter.get",
        /// Apply one write to this shard (body: [`ShardWrite`]).
        Write = "counter.write",
        /// Home: the sum over all shards (a strong read).
        Read = "counter.read",
        /// Home: the sum over all shards, to a reader that missed the KV read model (a read mark).
        ReadMiss = "counter.read-miss",
        /// Home: reset every shard (body: [`ShardWrite`]).
        ResetAll = "counter.reset",
        /// Home: set the number of shards (body: `CounterShardsRequest`).
        SetShards = "counter.shards",
        /// Home: a shard changed; flush soon.
        Changed = "counter.changed",
        /// Home: a live subscription.
        Socket = "counter.ws",
        /// Other shard: report changes to the home, or stop (body: [`Watch`]).
        Watch = "counter.watch",
        /// Home: a watched shard changed (body: [`ShardReport`]).
        ShardChanged = "counter.shard-changed",
        /// A shard: did it apply this op id? (body: [`ShardWrite`]; answer `Option<ShardState>`).
        Seen = "counter.seen",
        /// A shard: what it counted (answer [`crate::Metrics`]).
        Metrics = "counter.metrics",
    }
}

/// Which object a request is for and what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A room object.
    Room(RoomAddress, RoomOp),
    /// One shard object of a counter.
    Shard(CounterAddress, u32, ShardOp),
}

/// One internal request from the router (or another object) to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalRequest {
    /// The object and the operation.
    pub target: Target,
    /// What the caller may do there.
    pub rights: Rights,
    /// The authenticated user, if any.
    pub user: Option<String>,
}

impl InternalRequest {
    /// A request to a room.
    pub fn room(address: RoomAddress, op: RoomOp, rights: Rights, user: Option<String>) -> Self {
        Self { target: Target::Room(address, op), rights, user }
    }

    /// A request to a counter shard, with no user (counters do not record who wrote).
    pub fn shard(address: CounterAddress, shard: u32, op: ShardOp, rights: Rights) -> Self {
        Self { target: Target::Shard(address, shard, op), rights, user: None }
    }

    /// The headers that carry the request.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        match &self.target {
            Target::Room(address, op) => {
                out.push((headers::OP, op.as_str().to_owned()));
                out.push((headers::TENANT, address.tenant().to_owned()));
                out.push((headers::NAME, address.room().to_owned()));
            }
            Target::Shard(address, shard, op) => {
                out.push((headers::OP, op.as_str().to_owned()));
                out.push((headers::TENANT, address.tenant().to_owned()));
                out.push((headers::NAME, address.name().to_owned()));
                out.push((headers::SHARD, shard.to_string()));
            }
        }
        out.push((headers::RIGHTS, self.rights.to_string()));
        if let Some(user) = &self.user {
            out.push((headers::USER, user.clone()));
        }
        out
    }

    /// Reads a request from its headers (`header` looks one up by name). Anything missing or
    /// malformed is an error, never a default: only the router writes these headers.
    pub fn from_headers(header: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let required = |name: &str| {
            header(name).ok_or_else(|| ApiError::bad_request(format!("internal header {name} is missing")))
        };
        let op = required(headers::OP)?;
        let (tenant, name) = (required(headers::TENANT)?, required(headers::NAME)?);
        let rights = match header(headers::RIGHTS) {
            Some(text) => Rights::parse(&text)
                .ok_or_else(|| ApiError::bad_request(format!("internal rights {text:?} do not parse")))?,
            None => Rights::NONE,
        };
        let target = if let Some(op) = RoomOp::from_name(&op) {
            Target::Room(RoomAddress::new(&tenant, &name)?, op)
        } else if let Some(op) = ShardOp::from_name(&op) {
            let shard = required(headers::SHARD)?;
            let shard = shard
                .parse()
                .map_err(|_| ApiError::bad_request(format!("internal shard {shard:?} is not a number")))?;
            Target::Shard(CounterAddress::new(&tenant, &name)?, shard, op)
        } else {
            return Err(ApiError::not_found(format!("unknown internal operation {op:?}")));
        };
        Ok(Self { target, rights, user: header(headers::USER) })
    }
}

/// Body of [`ShardOp::Write`], [`ShardOp::ResetAll`] and [`ShardOp::Seen`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardWrite {
    /// The operation id.
    pub op_id: String,
    /// The operation.
    pub op: CounterOp,
}

/// Answer of [`ShardOp::Get`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    /// The shard's value.
    pub value: i64,
    /// The shard's version.
    pub version: u64,
    /// The shard counts the counter has had (meaningful on the home shard).
    pub history: ShardHistory,
    /// Live subscription sockets (on the home shard).
    #[serde(default)]
    pub subscribers: u32,
}

/// Body of [`ShardOp::ShardChanged`]: a shard's new state, reported to the home while the
/// counter has live subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardReport {
    /// The shard.
    pub shard: u32,
    /// Its value.
    pub value: i64,
    /// Its version.
    pub version: u64,
}

/// Body of [`ShardOp::Watch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// Report changes to the home (`true`) or stop (`false`).
    pub on: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::Right;

    fn round_trip(request: &InternalRequest) -> Result<InternalRequest, ApiError> {
        let headers = request.to_headers();
        InternalRequest::from_headers(|name| {
            headers.iter().find(|(n, _)| *n == name).map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn every_operation_round_trips_through_headers() {
        let room = RoomAddress::new("acme", "lobby").unwrap();
        let counter = CounterAddress::new("acme", "likes").unwrap();
        let rights = Rights::NONE.with(Right::Read).with(Right::Write);
        for op in RoomOp::ALL {
            let request = InternalRequest::room(room.clone(), *op, rights, Some("ada".into()));
            assert_eq!(round_trip(&request).unwrap(), request);
        }
        for op in ShardOp::ALL {
            let request = InternalRequest::shard(counter.clone(), 7, *op, Rights::ALL);
            assert_eq!(round_trip(&request).unwrap(), request);
        }
    }

    #[test]
    fn missing_or_corrupt_headers_are_errors_not_defaults() {
        let counter = CounterAddress::new("acme", "likes").unwrap();
        let good = InternalRequest::shard(counter, 1, ShardOp::Write, Rights::ALL).to_headers();
        let with = |name: &str, value: Option<&str>| {
            let mut headers = good.clone();
            headers.retain(|(n, _)| *n != name);
            if let Some(value) = value {
                headers.push((headers::ALL.iter().copied().find(|n| *n == name).unwrap(), value.into()));
            }
            InternalRequest::from_headers(|n| headers.iter().find(|(h, _)| *h == n).map(|(_, v)| v.clone()))
        };
        assert!(with(headers::SHARD, Some("x")).is_err());
        assert!(with(headers::SHARD, None).is_err());
        assert!(with(headers::NAME, Some("a b")).is_err());
        assert!(with(headers::RIGHTS, Some("fly")).is_err());
        assert_eq!(
            with(headers::OP, Some("counter.fly")).unwrap_err().code,
            edgeroom_protocol::ErrorCode::NotFound
        );
        assert!(with(headers::OP, None).is_err());
    }
}
