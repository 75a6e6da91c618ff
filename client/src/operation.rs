//! [`Operation`]: the future of one operation's outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::OpError;

/// An operation issued to a room or counter. It was queued when the call returned (dropping this
/// future does not cancel it; a failure then shows up as `OpFailed` in the event stream). Await
/// it for the acknowledged `seq` (for counters, the version) or the reason it failed.
#[derive(Debug)]
#[must_use = "await the operation to learn whether it was applied"]
pub struct Operation {
    op_id: Option<Uuid>,
    outcome: Outcome,
}

#[derive(Debug)]
enum Outcome {
    Waiting(oneshot::Receiver<Result<u64, OpError>>),
    Ready(Option<OpError>),
}

impl Operation {
    pub(crate) fn waiting(op_id: Uuid, receiver: oneshot::Receiver<Result<u64, OpError>>) -> Self {
        Self { op_id: Some(op_id), outcome: Outcome::Waiting(receiver) }
    }

    pub(crate) fn failed(error: OpError) -> Self {
        Self { op_id: error.op_id(), outcome: Outcome::Ready(Some(error)) }
    }

    /// The operation's id, as sent to the server (`None` when the value could not be encoded).
    pub fn op_id(&self) -> Option<Uuid> {
        self.op_id
    }
}

impl Future for Operation {
    type Output = Result<u64, OpError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let op_id = self.op_id.unwrap_or_default();
        match &mut self.outcome {
            Outcome::Waiting(receiver) => Pin::new(receiver).poll(cx).map(|outcome| {
                outcome
                    .unwrap_or_else(|_| Err(OpError::Closed { op_id, reason: "the client stopped".into() }))
            }),
            Outcome::Ready(error) => Poll::Ready(Err(error
                .take()
                .unwrap_or(OpError::Closed { op_id, reason: "the operation was already awaited".into() }))),
        }
    }
}
