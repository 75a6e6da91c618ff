//! The bounded buffer of operations waiting for their ack, each with a deadline.
//!
//! An operation stays here from the call until its `ack` or `error` arrives or its deadline passes.
//! After a reconnect every waiting operation is sent again with its original `op_id`, which the
//! room applies once.

use std::collections::{BTreeMap, HashMap};

use edgeroom_protocol::ClientMessage;
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use crate::OpError;

/// Where an operation's outcome goes.
pub(crate) type Reply = oneshot::Sender<Result<u64, OpError>>;

/// One operation waiting for its ack.
pub(crate) struct PendingOp {
    pub(crate) op_id: Uuid,
    pub(crate) message: ClientMessage,
    /// Encoded size, counted against the byte bound.
    pub(crate) bytes: usize,
    pub(crate) deadline: Instant,
    /// Whether it was ever written to a socket (then the room may have applied it).
    pub(crate) sent: bool,
    pub(crate) reply: Reply,
}

impl PendingOp {
    /// The error for an operation whose deadline passed.
    pub(crate) fn expiry_error(&self) -> OpError {
        if self.sent {
            OpError::TimedOut { op_id: self.op_id }
        } else {
            OpError::Expired { op_id: self.op_id }
        }
    }
}

/// Operations in the order they were issued, bounded by count and bytes.
pub(crate) struct PendingOps {
    by_order: BTreeMap<u64, PendingOp>,
    order_of: HashMap<Uuid, u64>,
    next_order: u64,
    bytes: usize,
    max_ops: usize,
    max_bytes: usize,
}

impl PendingOps {
    pub(crate) fn new(max_ops: usize, max_bytes: usize) -> Self {
        Self {
            by_order: BTreeMap::new(),
            order_of: HashMap::new(),
            next_order: 0,
            bytes: 0,
            max_ops,
            max_bytes,
        }
    }

    /// Takes `op`, or hands it back with [`OpError::BufferFull`].
    pub(crate) fn push(&mut self, op: PendingOp) -> Result<(), Box<(PendingOp, OpError)>> {
        if self.by_order.len() >= self.max_ops || self.bytes + op.bytes > self.max_bytes {
            let error =
                OpError::BufferFull { op_id: op.op_id, pending: self.by_order.len(), bytes: self.bytes };
            return Err(Box::new((op, error)));
        }
        self.bytes += op.bytes;
        self.order_of.insert(op.op_id, self.next_order);
        self.by_order.insert(self.next_order, op);
        self.next_order += 1;
        Ok(())
    }

    /// Removes the operation `op_id` (its ack or error arrived).
    pub(crate) fn take(&mut self, op_id: Uuid) -> Option<PendingOp> {
        let order = self.order_of.remove(&op_id)?;
        let op = self.by_order.remove(&order)?;
        self.bytes -= op.bytes;
        Some(op)
    }

    /// Marks `op_id` as written to a socket.
    pub(crate) fn mark_sent(&mut self, op_id: Uuid) {
        if let Some(op) = self.order_of.get(&op_id).and_then(|order| self.by_order.get_mut(order)) {
            op.sent = true;
        }
    }

    /// Every waiting operation's id and message, in issue order (to send after a reconnect).
    pub(crate) fn messages(&self) -> Vec<(Uuid, ClientMessage)> {
        self.by_order.values().map(|op| (op.op_id, op.message.clone())).collect()
    }

    /// The earliest deadline. Every operation of a client gets the same time to live when it is
    /// issued, and operations are kept in issue order, so it is the first one's.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.by_order.values().next().map(|op| op.deadline)
    }

    /// Removes and returns every operation whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PendingOp> {
        let mut expired = Vec::new();
        while let Some(entry) = self.by_order.first_entry() {
            if entry.get().deadline > now {
                break;
            }
            let op = entry.remove();
            self.order_of.remove(&op.op_id);
            self.bytes -= op.bytes;
            expired.push(op);
        }
        expired
    }

    /// Removes and returns everything.
    pub(crate) fn drain(&mut self) -> Vec<PendingOp> {
        self.order_of.clear();
        self.bytes = 0;
        std::mem::take(&mut self.by_order).into_values().collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_order.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use edgeroom_protocol::{Body, Publish};

    use super::*;

    fn op(n: u128, bytes: usize, deadline: Instant) -> (PendingOp, oneshot::Receiver<Result<u64, OpError>>) {
        let (reply, receiver) = oneshot::channel();
        let op_id = Uuid::from_u128(n);
        let message = Publish { op_id: Some(op_id), body: Body::null(), topic: None }.into();
        (PendingOp { op_id, message, bytes, deadline, sent: false, reply }, receiver)
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let later = Instant::now() + Duration::from_secs(60);
        let mut ops = PendingOps::new(2, 100);
        assert!(ops.push(op(1, 10, later).0).is_ok());
        assert!(matches!(
            ops.push(op(2, 91, later).0),
            Err(b) if matches!(b.1, OpError::BufferFull { pending: 1, bytes: 10, .. })
        ));
        assert!(ops.push(op(3, 90, later).0).is_ok());
        assert!(
            matches!(ops.push(op(4, 0, later).0), Err(b) if matches!(b.1, OpError::BufferFull { pending: 2, .. }))
        );
        assert_eq!(ops.take(Uuid::from_u128(1)).map(|op| op.bytes), Some(10));
        assert!(ops.push(op(5, 10, later).0).is_ok());
        let order: Vec<Uuid> = ops.messages().into_iter().map(|(id, _)| id).collect();
        assert_eq!(order, vec![Uuid::from_u128(3), Uuid::from_u128(5)]);
    }

    #[test]
    fn expiry_tells_unsent_from_sent() {
        let now = Instant::now();
        let mut ops = PendingOps::new(10, 1000);
        ops.push(op(1, 1, now - Duration::from_secs(1)).0).ok();
        ops.push(op(2, 1, now).0).ok();
        ops.push(op(3, 1, now + Duration::from_secs(5)).0).ok();
        ops.mark_sent(Uuid::from_u128(2));
        assert_eq!(ops.next_deadline(), Some(now - Duration::from_secs(1)));
        let errors: Vec<OpError> = ops.expire(now).iter().map(PendingOp::expiry_error).collect();
        assert_eq!(
            errors,
            vec![
                OpError::Expired { op_id: Uuid::from_u128(1) },
                OpError::TimedOut { op_id: Uuid::from_u128(2) }
            ]
        );
        assert_eq!(ops.len(), 1);
    }
}
