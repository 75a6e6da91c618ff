//! [`Room`]: one room's handle (operations, presence, the state copy) and its event stream
//! [`RoomEvents`], over a driver that resumes exactly.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use edgeroom_protocol::{Body, Event, Member, PresenceSet, Publish, ServerMessage, StateDelete, StateSet};
use futures_util::Stream;
use reqwest::Url;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::driver::{DriverHandle, LinkConfig, Session};
use crate::event::{Connected, GapEvent};
use crate::state::RoomState;
use crate::token::Credentials;
use crate::{ConnectionState, Error, OpError, Operation, Position, RoomEvent, RoomOptions};

/// A connected room. Cheap to clone; every clone drives the same connection, which closes when
/// the last clone is dropped (or on [`Room::close`]).
#[derive(Clone)]
pub struct Room {
    driver: DriverHandle,
    state: Arc<Mutex<RoomState>>,
}

/// The room's events, in order ([`RoomEvent`]). Ends after the room is closed.
pub struct RoomEvents {
    receiver: mpsc::Receiver<RoomEvent>,
}

impl Room {
    /// Connects and waits for the room's `welcome`. Fails at once on a bad name, URL, token or
    /// right, or when the server cannot be reached; later link failures are retried.
    pub async fn connect(options: RoomOptions) -> Result<(Room, RoomEvents), Error> {
        options.address()?;
        let state =
            Arc::new(Mutex::new(RoomState { position: options.resume.clone(), ..RoomState::default() }));
        let config = LinkConfig {
            credentials: Credentials::new(options.token.clone(), options.token_source.clone()),
            format: options.format,
            heartbeat_interval: options.heartbeat_interval,
            heartbeat_timeout: options.heartbeat_timeout,
            connect_timeout: options.connect_timeout,
            reconnect: options.reconnect.clone(),
            op_ttl: options.op_ttl,
            max_pending_ops: options.max_pending_ops,
            max_pending_bytes: options.max_pending_bytes,
            event_buffer: options.event_buffer,
            max_frame_bytes: options.max_frame_bytes,
        };
        let session = RoomSession { options, state: state.clone(), welcome_epoch: String::new() };
        let (driver, receiver) = DriverHandle::start(session, config).await?;
        Ok((Room { driver, state }, RoomEvents { receiver }))
    }

    /// Publishes a message (any serializable value). Resolves to the event's `seq` once it is
    /// durable.
    pub fn publish<T: Serialize + ?Sized>(&self, body: &T) -> Operation {
        self.publish_to(None, body)
    }

    /// Publishes a message with a topic label.
    pub fn publish_to<T: Serialize + ?Sized>(&self, topic: Option<String>, body: &T) -> Operation {
        match Body::from_value(body) {
            Ok(body) => self.publish_body(body, topic),
            Err(error) => Operation::failed(OpError::InvalidBody(error.to_string())),
        }
    }

    /// Publishes a [`Body`] (JSON text kept as written).
    pub fn publish_body(&self, body: Body, topic: Option<String>) -> Operation {
        let op_id = Uuid::new_v4();
        self.driver.submit(op_id, Publish { op_id: Some(op_id), body, topic }.into())
    }

    /// Sets `key` of the shared state. Resolves to the change's `seq`.
    pub fn state_set<T: Serialize + ?Sized>(&self, key: impl Into<String>, value: &T) -> Operation {
        match Body::from_value(value) {
            Ok(value) => {
                let op_id = Uuid::new_v4();
                self.driver.submit(op_id, StateSet { op_id: Some(op_id), key: key.into(), value }.into())
            }
            Err(error) => Operation::failed(OpError::InvalidBody(error.to_string())),
        }
    }

    /// Deletes `key` of the shared state. Resolves to the change's `seq`.
    pub fn state_delete(&self, key: impl Into<String>) -> Operation {
        let op_id = Uuid::new_v4();
        self.driver.submit(op_id, StateDelete { op_id: Some(op_id), key: key.into() }.into())
    }

    /// Sets this connection's presence data (kept and sent again after every reconnect). Needs the
    /// `presence` right; a refusal arrives as a [`RoomEvent::Error`].
    pub fn set_presence<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), Error> {
        let data = Body::from_value(data).map_err(|e| Error::InvalidOptions(e.to_string()))?;
        self.driver.sticky(PresenceSet { data }.into())
    }

    /// The shared state as of the last processed event.
    pub fn state(&self) -> BTreeMap<String, Body> {
        self.lock().state.clone()
    }

    /// The members present, by connection id.
    pub fn members(&self) -> Vec<Member> {
        self.lock().members.values().cloned().collect()
    }

    /// This connection's id (changes with every reconnect).
    pub fn connection_id(&self) -> Option<u64> {
        self.lock().connection_id
    }

    /// The last event processed: save it to resume exactly there later.
    pub fn position(&self) -> Option<Position> {
        self.lock().position.clone()
    }

    /// The connection state now.
    pub fn connection_state(&self) -> ConnectionState {
        self.driver.state()
    }

    /// A receiver of every change of the connection state.
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.driver.watch()
    }

    /// Closes the connection. Operations still waiting fail with [`OpError::Closed`]; the event
    /// stream ends.
    pub async fn close(&self) {
        self.driver.close().await;
    }

    fn lock(&self) -> MutexGuard<'_, RoomState> {
        lock(&self.state)
    }
}

impl RoomEvents {
    /// The next event, or `None` once the room is closed.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.receiver.recv().await
    }
}

impl Stream for RoomEvents {
    type Item = RoomEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RoomEvent>> {
        self.receiver.poll_recv(cx)
    }
}

fn lock(state: &Mutex<RoomState>) -> MutexGuard<'_, RoomState> {
    // The state holds no invariant a panicking writer could break half-way.
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The room protocol: welcome, replay, gap, events, presence.
struct RoomSession {
    options: RoomOptions,
    state: Arc<Mutex<RoomState>>,
    /// The epoch of the last welcome (a gap that follows belongs to it).
    welcome_epoch: String,
}

impl RoomSession {
    fn deliver(&mut self, event: Event, out: &mut Vec<RoomEvent>) -> Result<(), Error> {
        let mut state = lock(&self.state);
        match state.last_seq() {
            // Already delivered (a replay overlapping live events).
            Some(last) if event.seq <= last => return Ok(()),
            Some(last) if event.seq != last + 1 => {
                return Err(Error::SequenceHole { expected: last + 1, got: event.seq });
            }
            _ => {}
        }
        state.apply_event(&event);
        out.push(RoomEvent::Event(event));
        Ok(())
    }
}

impl Session for RoomSession {
    type Event = RoomEvent;

    fn url(&self) -> Result<Url, Error> {
        let position = lock(&self.state).position.clone();
        self.options.socket_url(position.as_ref())
    }

    fn ready_on_open(&self) -> bool {
        false
    }

    fn on_message(&mut self, message: ServerMessage, out: &mut Vec<RoomEvent>) -> Result<bool, Error> {
        match message {
            ServerMessage::Welcome(welcome) => {
                let mut state = lock(&self.state);
                let before = state.position.clone();
                state.apply_welcome(&welcome);
                self.welcome_epoch = welcome.epoch.clone();
                out.push(RoomEvent::Connected(Connected {
                    connection_id: welcome.connection_id,
                    epoch: welcome.epoch.clone(),
                    seq: welcome.seq,
                    members: welcome.members.clone(),
                    resumed: before.is_some(),
                }));
                // Same epoch but the room is behind us: events we saw are gone from it. Say so
                // rather than skip its next events as duplicates.
                if let Some(before) =
                    before.filter(|b| b.seq > welcome.seq && b.epoch.as_deref() == Some(&welcome.epoch))
                {
                    state.apply_gap(welcome.epoch.clone(), welcome.seq);
                    out.push(RoomEvent::Gap(GapEvent {
                        resume_from: before.seq,
                        seq: welcome.seq,
                        epoch: welcome.epoch,
                        state: state.state.clone(),
                    }));
                }
                Ok(true)
            }
            ServerMessage::Gap(gap) => {
                let mut state = lock(&self.state);
                state.apply_gap(self.welcome_epoch.clone(), gap.seq);
                out.push(RoomEvent::Gap(GapEvent {
                    resume_from: gap.resume_from,
                    seq: gap.seq,
                    epoch: self.welcome_epoch.clone(),
                    state: state.state.clone(),
                }));
                Ok(false)
            }
            ServerMessage::Event(event) => self.deliver(event, out).map(|()| false),
            ServerMessage::Events(batch) => {
                for event in batch.events {
                    self.deliver(event, out)?;
                }
                Ok(false)
            }
            ServerMessage::Presence(diff) => {
                lock(&self.state).apply_presence(&diff);
                out.push(RoomEvent::Presence(diff));
                Ok(false)
            }
            ServerMessage::Counter(_)
            | ServerMessage::Ack(_)
            | ServerMessage::Error(_)
            | ServerMessage::Pong(_) => {
                Err(Error::Unexpected(format!("a {} frame on a room socket", message.type_name())))
            }
        }
    }

    fn error_event(error: Error) -> RoomEvent {
        RoomEvent::Error(error)
    }

    fn op_failed_event(error: OpError) -> RoomEvent {
        RoomEvent::OpFailed(error)
    }
}

#[cfg(test)]
mod tests {
    use edgeroom_protocol::{EventKind, Events, Gap, StateEntry, Welcome};

    use super::*;

    fn session(resume: Option<Position>) -> RoomSession {
        let state = RoomState { position: resume, ..RoomState::default() };
        RoomSession {
            options: RoomOptions::new("http://127.0.0.1:1", "acme", "lobby"),
            state: Arc::new(Mutex::new(state)),
            welcome_epoch: String::new(),
        }
    }

    fn welcome(seq: u64, epoch: &str) -> ServerMessage {
        let state = vec![StateEntry { key: "k".into(), value: Body::from_json("1").unwrap(), seq }];
        Welcome { connection_id: 7, seq, members: vec![], state, epoch: epoch.into() }.into()
    }

    fn event(seq: u64) -> Event {
        Event { seq, kind: EventKind::Message, body: Body::null(), sender: None, topic: None, key: None }
    }

    fn seqs(out: &[RoomEvent]) -> Vec<u64> {
        out.iter().filter_map(|e| if let RoomEvent::Event(e) = e { Some(e.seq) } else { None }).collect()
    }

    #[test]
    fn replays_overlapping_live_events_are_delivered_once() {
        let mut room = session(Some(Position { epoch: Some("e1".into()), seq: 3 }));
        let mut out = Vec::new();
        assert!(room.on_message(welcome(6, "e1"), &mut out).unwrap());
        room.on_message(Events { events: vec![event(4), event(5)] }.into(), &mut out).unwrap();
        room.on_message(event(5).into(), &mut out).unwrap();
        room.on_message(Events { events: vec![event(5), event(6), event(7)] }.into(), &mut out).unwrap();
        assert_eq!(seqs(&out), vec![4, 5, 6, 7]);
        assert!(matches!(&out[0], RoomEvent::Connected(c) if c.resumed && c.seq == 6));
        assert_eq!(lock(&room.state).position, Some(Position { epoch: Some("e1".into()), seq: 7 }));
    }

    #[test]
    fn a_hole_in_the_sequence_is_an_error_not_a_skip() {
        let mut room = session(None);
        let mut out = Vec::new();
        room.on_message(welcome(10, "e1"), &mut out).unwrap();
        room.on_message(event(11).into(), &mut out).unwrap();
        let error = room.on_message(event(13).into(), &mut out).unwrap_err();
        assert_eq!(error, Error::SequenceHole { expected: 12, got: 13 });
        assert_eq!(room.url().unwrap().query(), Some("format=binary&resume_from=11&epoch=e1"));
    }

    #[test]
    fn a_gap_moves_the_position_to_the_new_epoch_with_the_welcome_state() {
        let mut room = session(Some(Position { epoch: Some("old".into()), seq: 40 }));
        let mut out = Vec::new();
        room.on_message(welcome(12, "new"), &mut out).unwrap();
        room.on_message(Gap { resume_from: 40, seq: 12 }.into(), &mut out).unwrap();
        room.on_message(event(13).into(), &mut out).unwrap();
        let Some(RoomEvent::Gap(gap)) = out.get(1) else { panic!("expected a gap: {out:?}") };
        assert_eq!((gap.resume_from, gap.seq, gap.epoch.as_str()), (40, 12, "new"));
        assert_eq!(gap.state.get("k").map(Body::as_str), Some("1"));
        assert_eq!(seqs(&out), vec![13]);
        assert_eq!(lock(&room.state).position, Some(Position { epoch: Some("new".into()), seq: 13 }));
    }

    #[test]
    fn a_room_behind_the_client_in_the_same_epoch_is_reported_as_a_gap() {
        let mut room = session(Some(Position { epoch: Some("e1".into()), seq: 50 }));
        let mut out = Vec::new();
        room.on_message(welcome(20, "e1"), &mut out).unwrap();
        assert!(matches!(out.get(1), Some(RoomEvent::Gap(g)) if g.resume_from == 50 && g.seq == 20));
        room.on_message(event(21).into(), &mut out).unwrap();
        assert_eq!(seqs(&out), vec![21]);
    }

    #[test]
    fn frames_of_another_protocol_are_errors() {
        let mut room = session(None);
        let counter = edgeroom_protocol::CounterValue { name: "c".into(), value: 1, version: 1 };
        assert!(matches!(room.on_message(counter.into(), &mut Vec::new()), Err(Error::Unexpected(_))));
    }
}
