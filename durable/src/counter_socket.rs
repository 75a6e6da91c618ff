//! Live counter subscriptions: what a frame from a counter socket means, under the same size,
//! rate, strike and heartbeat rules as room sockets ([`Admission`]).

use std::collections::BTreeMap;

use edgeroom_protocol::{
    Ack, ClientMessage, CounterOp, ErrorCode, ErrorFrame, Format, Pong, ServerMessage, WireFrame,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Admission, ApiError, CounterState, Limits};

/// One subscription socket, kept in its attachment (it survives hibernation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    /// Id within the counter's home shard, never reused.
    pub id: u64,
    /// The form of frames sent to it.
    pub format: Format,
    /// Whether its token has the `write` right.
    pub can_write: bool,
    /// The shard's counts when this socket last carried them ([`crate::Metrics::carried`]), so
    /// that they survive hibernation between saves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
}

/// What the shell does for one frame.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketStep {
    /// Apply a write, then answer with [`write_answer`].
    Apply {
        /// The client's operation id.
        op_id: Uuid,
        /// The write.
        op: CounterOp,
    },
    /// Send this frame back.
    Reply(ServerMessage),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// The standing of every subscription socket of a home shard (memory only).
#[derive(Debug, Default)]
pub struct Subscribers {
    standing: BTreeMap<u64, Admission>,
}

impl Subscribers {
    /// Decides what one frame from `who` means. `sharded`: whether the counter has more than one
    /// shard (`set` is only for unsharded counters).
    pub fn handle_frame(
        &mut self,
        who: &Subscriber,
        frame: &WireFrame,
        sharded: bool,
        limits: &Limits,
        now_ms: u64,
    ) -> Vec<SocketStep> {
        let admission = self.standing.entry(who.id).or_insert_with(|| Admission::new(limits, now_ms));
        let decoded = admission
            .admit(frame.len(), limits, now_ms)
            .and_then(|()| ClientMessage::decode(frame).map_err(ApiError::from));
        let message = match decoded {
            Ok(message) => message,
            Err(refusal) => return self.refuse(who.id, refusal, None, limits, now_ms),
        };
        let op_id = message.op_id();
        let (op_id, op) = match message {
            ClientMessage::Ping(ping) => return vec![SocketStep::Reply(Pong { nonce: ping.nonce }.into())],
            ClientMessage::CounterAdd(add) => (add.op_id, CounterOp::Add(add.delta)),
            ClientMessage::CounterSet(set) if !sharded => (set.op_id, CounterOp::Set(set.value)),
            ClientMessage::CounterSet(set) => {
                let refusal = ApiError::new(
                    ErrorCode::LimitExceeded,
                    "set is not available on a sharded counter; use reset",
                );
                return self.refuse(who.id, refusal, Some(set.op_id), limits, now_ms);
            }
            ClientMessage::CounterReset(reset) => (reset.op_id, CounterOp::Reset),
            other => {
                let refusal = ApiError::new(
                    ErrorCode::UnknownType,
                    format!("`{}` is not a counter operation", other.type_name()),
                );
                return self.refuse(who.id, refusal, op_id, limits, now_ms);
            }
        };
        if !who.can_write {
            let refusal = ApiError::new(ErrorCode::Forbidden, "this connection lacks the `write` right");
            return self.refuse(who.id, refusal, Some(op_id), limits, now_ms);
        }
        vec![SocketStep::Apply { op_id, op }]
    }

    /// The runtime answered a heartbeat `ping` of socket `id` at `at_ms`.
    pub fn touch(&mut self, id: u64, limits: &Limits, at_ms: u64) {
        self.standing.entry(id).or_insert_with(|| Admission::new(limits, at_ms)).touch(at_ms);
    }

    /// Whether socket `id` has been silent past the heartbeat timeout (a socket first seen now,
    /// after an eviction, gets a fresh window).
    pub fn is_silent(&mut self, id: u64, limits: &Limits, now_ms: u64) -> bool {
        self.standing.entry(id).or_insert_with(|| Admission::new(limits, now_ms)).is_silent(limits, now_ms)
    }

    /// Socket `id` is gone.
    pub fn forget(&mut self, id: u64) {
        self.standing.remove(&id);
    }

    fn refuse(
        &mut self,
        id: u64,
        refusal: ApiError,
        op_id: Option<Uuid>,
        limits: &Limits,
        now_ms: u64,
    ) -> Vec<SocketStep> {
        let ApiError { code, message } = refusal;
        let mut steps = vec![SocketStep::Reply(ErrorFrame { code, message, op_id }.into())];
        let close = self.standing.get_mut(&id).and_then(|admission| admission.strike(code, limits, now_ms));
        if let Some((code, reason)) = close {
            steps.push(SocketStep::Close(code, reason));
        }
        steps
    }
}

/// The answer to an applied (or refused) socket write: an `ack` whose `seq` is the counter's
/// version after it, or an `error` naming the op.
pub fn write_answer(op_id: Uuid, result: Result<CounterState, ApiError>) -> ServerMessage {
    match result {
        Ok(state) => Ack { op_id, seq: state.version }.into(),
        Err(ApiError { code, message }) => ErrorFrame { code, message, op_id: Some(op_id) }.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::Body;
    use edgeroom_protocol::{close_code, CounterAdd, CounterSet, Ping, Publish};

    fn writer() -> Subscriber {
        Subscriber { id: 1, format: Format::Json, can_write: true, counts: Vec::new() }
    }

    fn frame(message: ClientMessage) -> WireFrame {
        message.encode(Format::Json)
    }

    fn codes(steps: &[SocketStep]) -> Vec<ErrorCode> {
        steps
            .iter()
            .filter_map(|step| match step {
                SocketStep::Reply(ServerMessage::Error(e)) => Some(e.code),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn frames_become_writes_replies_or_refusals() {
        let limits = Limits::default();
        let mut subs = Subscribers::default();
        let op_id = Uuid::from_u128(7);
        let add = frame(CounterAdd { op_id, delta: 2 }.into());
        assert_eq!(
            subs.handle_frame(&writer(), &add, false, &limits, 0),
            vec![SocketStep::Apply { op_id, op: CounterOp::Add(2) }]
        );
        let ping = frame(Ping { nonce: Some(3) }.into());
        assert_eq!(
            subs.handle_frame(&writer(), &ping, false, &limits, 0),
            vec![SocketStep::Reply(Pong { nonce: Some(3) }.into())]
        );
        let set = frame(CounterSet { op_id, value: 1 }.into());
        assert_eq!(
            codes(&subs.handle_frame(&writer(), &set, true, &limits, 0)),
            vec![ErrorCode::LimitExceeded]
        );
        let reader = Subscriber { can_write: false, ..writer() };
        assert_eq!(codes(&subs.handle_frame(&reader, &add, false, &limits, 0)), vec![ErrorCode::Forbidden]);
        let publish = frame(Publish { op_id: None, body: Body::null(), topic: None }.into());
        assert_eq!(
            codes(&subs.handle_frame(&writer(), &publish, false, &limits, 0)),
            vec![ErrorCode::UnknownType]
        );
        let garbage = WireFrame::Text("nope".into());
        assert_eq!(
            codes(&subs.handle_frame(&writer(), &garbage, false, &limits, 0)),
            vec![ErrorCode::MalformedFrame]
        );
        assert_eq!(
            write_answer(op_id, Ok(CounterState { value: 1, version: 9 })),
            Ack { op_id, seq: 9 }.into()
        );
    }

    #[test]
    fn a_flooding_socket_is_refused_then_closed_like_a_room_socket() {
        let limits = Limits { rate_per_second: 1.0, rate_burst: 2.0, max_strikes: 3, ..Limits::default() };
        let mut subs = Subscribers::default();
        let add = frame(CounterAdd { op_id: Uuid::from_u128(1), delta: 1 }.into());
        let steps: Vec<Vec<SocketStep>> =
            (0..5).map(|_| subs.handle_frame(&writer(), &add, false, &limits, 0)).collect();
        assert!(matches!(steps[0][..], [SocketStep::Apply { .. }]));
        assert_eq!(codes(&steps[2]), vec![ErrorCode::RateLimited]);
        assert!(steps[4].contains(&SocketStep::Close(
            close_code::RATE_LIMITED,
            "too many refused frames (RateLimited)".into()
        )));
        let big = WireFrame::Text("x".repeat(limits.max_frame_bytes + 1));
        let mut other = Subscribers::default();
        assert_eq!(codes(&other.handle_frame(&writer(), &big, false, &limits, 0)), vec![ErrorCode::TooLarge]);
    }

    #[test]
    fn silence_is_measured_from_the_last_frame_or_heartbeat() {
        let limits = Limits { heartbeat_timeout_ms: 1_000, ..Limits::default() };
        let mut subs = Subscribers::default();
        assert!(!subs.is_silent(1, &limits, 0));
        assert!(subs.is_silent(1, &limits, 1_001));
        subs.touch(1, &limits, 1_500);
        assert!(!subs.is_silent(1, &limits, 2_000));
        subs.forget(1);
        assert!(!subs.is_silent(1, &limits, 10_000), "a socket seen again starts a fresh window");
    }
}
