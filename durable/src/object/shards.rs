//! Reaching the shards of a counter from the router or from its home shard.

use edgeroom_protocol::{CounterAddress, CounterWriteResult, Rights};
use worker::Env;

use super::http::call_json;
use crate::{ApiError, InternalRequest, ShardClient, ShardOp, ShardState, ShardWrite};

/// The shards of one counter, reached through their objects.
pub struct RemoteShards<'a> {
    /// The Worker's bindings.
    pub env: &'a Env,
    /// The counter.
    pub address: &'a CounterAddress,
}

impl RemoteShards<'_> {
    /// Sends `op` with an optional JSON body to `shard` and reads its JSON answer.
    pub async fn call<T: serde::de::DeserializeOwned>(
        &self,
        shard: u32,
        op: ShardOp,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, ApiError> {
        let body =
            body.map(serde_json::to_string).transpose().map_err(|e| ApiError::internal(e.to_string()))?;
        let request = InternalRequest::shard(self.address.clone(), shard, op, Rights::ALL);
        call_json(self.env, &request, body).await
    }

    /// What `shard` holds now (the home also knows the shard counts).
    pub async fn state(&self, shard: u32) -> Result<ShardState, ApiError> {
        self.call(shard, ShardOp::Get, None::<&()>).await
    }
}

impl ShardClient for RemoteShards<'_> {
    async fn seen(&self, shard: u32, op_id: &str) -> Result<Option<CounterWriteResult>, ApiError> {
        let probe = ShardWrite { op_id: op_id.to_owned(), op: edgeroom_protocol::CounterOp::Reset };
        self.call(shard, ShardOp::Seen, Some(&probe)).await
    }

    async fn write(&self, shard: u32, write: &ShardWrite) -> Result<CounterWriteResult, ApiError> {
        self.call(shard, ShardOp::Write, Some(write)).await
    }
}
