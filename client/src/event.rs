//! What a room's event stream yields, and the connection state an app can watch.

use std::collections::BTreeMap;
use std::time::Duration;

use edgeroom_protocol::{Body, Event, Member, PresenceDiff};

use crate::{Error, OpError};

/// One item of a room's event stream ([`crate::RoomEvents`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A session opened (the first one, or after a reconnect).
    Connected(Connected),
    /// A sequenced event: each `seq` exactly once, in order, across reconnects.
    Event(Event),
    /// Members joined, left or changed their presence data.
    Presence(PresenceDiff),
    /// The room could not replay every missed event: the events after `resume_from` up to `seq` will
    /// never arrive. The app's copy of the room must be rebuilt from `state`.
    Gap(GapEvent),
    /// An operation failed whose [`crate::Operation`] the app had dropped (otherwise the failure
    /// goes to the operation).
    OpFailed(OpError),
    /// Something went wrong that the client handles itself (a malformed frame, a lost link, an
    /// error frame naming no operation); it is reported so nothing passes silently.
    Error(Error),
}

/// A session opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Connected {
    /// This connection's id in the room (the `sender` of its events).
    pub connection_id: u64,
    /// The room's epoch.
    pub epoch: String,
    /// The room's sequence number now.
    pub seq: u64,
    /// Members present now, this connection included.
    pub members: Vec<Member>,
    /// Whether the session continues an earlier position (missed events follow, or a gap).
    pub resumed: bool,
}

/// A gap: history could not cover a resume.
#[derive(Debug, Clone, PartialEq)]
pub struct GapEvent {
    /// The `seq` the client resumed from.
    pub resume_from: u64,
    /// The room's `seq` that `state` reflects; events after it follow.
    pub seq: u64,
    /// The room's epoch now (another one than before when the room was restored).
    pub epoch: String,
    /// The whole shared state as of `seq`.
    pub state: BTreeMap<String, Body>,
}

/// The state of a client's link.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionState {
    /// Opening a connection (`attempt` 0 is the first one).
    Connecting {
        /// Failed attempts in a row before this one.
        attempt: usize,
    },
    /// Connected and in session.
    Open,
    /// The link was lost; the next attempt starts after `delay`.
    Reconnecting {
        /// Number of the attempt about to be made (1 for the first retry).
        attempt: usize,
        /// How long the client waits before it.
        delay: Duration,
        /// Why the last connection ended or the last attempt failed.
        error: Error,
    },
    /// Closed for good.
    Closed {
        /// Why: closed by the app, an error retrying cannot fix (bad token, bad name), or the
        /// reconnect attempts ran out.
        reason: Error,
    },
}
