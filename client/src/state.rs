//! What the client knows about its room: the resume position, the shared state and the members,
//! kept current from `welcome`, events and presence diffs.

use std::collections::BTreeMap;

use edgeroom_protocol::{Body, Event, EventKind, Member, PresenceDiff, StateEntry, Welcome};

/// A point in a room's history: the last `seq` processed and the epoch it counts in. Save it
/// (`Room::position`) and pass it back (`RoomOptions::with_resume`) to continue exactly there, also
/// in another process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The room epoch `seq` belongs to; `None` resumes by `seq` alone.
    pub epoch: Option<String>,
    /// The last sequence number processed.
    pub seq: u64,
}

/// The client's copy of the room.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomState {
    /// Last event delivered to the app (or the point a fresh session starts from).
    pub(crate) position: Option<Position>,
    /// The shared state and the `seq` it reflects.
    pub(crate) state: BTreeMap<String, Body>,
    pub(crate) state_seq: u64,
    pub(crate) members: BTreeMap<u64, Member>,
    pub(crate) connection_id: Option<u64>,
}

impl RoomState {
    /// A `welcome` is authoritative for the state (as of its `seq`) and the members. The delivery
    /// position only moves for a fresh session; a resume keeps it (replayed events follow, or a gap).
    pub(crate) fn apply_welcome(&mut self, welcome: &Welcome) {
        self.state = entries_map(&welcome.state);
        self.state_seq = welcome.seq;
        self.members = welcome.members.iter().map(|m| (m.connection_id, m.clone())).collect();
        self.connection_id = Some(welcome.connection_id);
        match &mut self.position {
            Some(position) => {
                if position.epoch.is_none() {
                    position.epoch = Some(welcome.epoch.clone());
                }
            }
            None => self.position = Some(Position { epoch: Some(welcome.epoch.clone()), seq: welcome.seq }),
        }
    }

    /// After a `gap`, the app continues from the welcome's state at `seq` in `epoch`.
    pub(crate) fn apply_gap(&mut self, epoch: String, seq: u64) {
        self.position = Some(Position { epoch: Some(epoch), seq });
    }

    /// Records a delivered event; state events newer than the state change it.
    pub(crate) fn apply_event(&mut self, event: &Event) {
        if event.seq > self.state_seq {
            if let Some(key) = &event.key {
                match event.kind {
                    EventKind::StateSet => {
                        self.state.insert(key.clone(), event.body.clone());
                    }
                    EventKind::StateDelete => {
                        self.state.remove(key);
                    }
                    EventKind::Message => {}
                }
            }
            self.state_seq = event.seq;
        }
        let epoch = self.position.as_ref().and_then(|p| p.epoch.clone());
        self.position = Some(Position { epoch, seq: event.seq });
    }

    pub(crate) fn apply_presence(&mut self, diff: &PresenceDiff) {
        for id in &diff.left {
            self.members.remove(id);
        }
        for member in diff.joined.iter().chain(&diff.updated) {
            self.members.insert(member.connection_id, member.clone());
        }
    }

    /// The seq the next delivered event must have, when known.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.position.as_ref().map(|p| p.seq)
    }
}

fn entries_map(entries: &[StateEntry]) -> BTreeMap<String, Body> {
    entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Body {
        Body::from_json(text).unwrap()
    }

    fn state_event(seq: u64, kind: EventKind, key: &str, value: &str) -> Event {
        Event { seq, kind, body: body(value), sender: None, topic: None, key: Some(key.into()) }
    }

    #[test]
    fn welcome_state_wins_over_replayed_older_events() {
        let mut room =
            RoomState { position: Some(Position { epoch: Some("e".into()), seq: 3 }), ..Default::default() };
        room.apply_welcome(&Welcome {
            connection_id: 9,
            seq: 5,
            members: vec![],
            state: vec![StateEntry { key: "k".into(), value: body("2"), seq: 5 }],
            epoch: "e".into(),
        });
        assert_eq!(room.last_seq(), Some(3), "a resume keeps its position until the replay");
        room.apply_event(&state_event(4, EventKind::StateSet, "k", "1"));
        room.apply_event(&state_event(5, EventKind::StateSet, "k", "2"));
        assert_eq!(room.state.get("k"), Some(&body("2")));
        room.apply_event(&state_event(6, EventKind::StateDelete, "k", "null"));
        assert!(room.state.is_empty());
        assert_eq!(room.position, Some(Position { epoch: Some("e".into()), seq: 6 }));
    }
}
