//! The connections of a room as the running object knows them: their attachment data plus their
//! in-memory [`Admission`] standing (rate bucket, strikes, last activity), which may reset on
//! eviction.

use std::collections::BTreeMap;

use edgeroom_protocol::Member;

use crate::{Admission, Connection, Limits};

/// One connection and its in-memory standing.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub connection: Connection,
    pub admission: Admission,
}

/// All connections of the room, by id.
#[derive(Debug, Default)]
pub(crate) struct Peers(BTreeMap<u64, Peer>);

impl Peers {
    pub fn insert(&mut self, connection: Connection, limits: &Limits, now_ms: u64) {
        let peer = Peer { connection, admission: Admission::new(limits, now_ms) };
        self.0.insert(peer.connection.id, peer);
    }

    pub fn remove(&mut self, id: u64) -> Option<Peer> {
        self.0.remove(&id)
    }

    pub fn get(&self, id: u64) -> Option<&Peer> {
        self.0.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Peer> {
        self.0.get_mut(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.0.contains_key(&id)
    }

    /// Ids of the connections that receive room traffic, except `except`.
    pub fn live_ids_except(&self, except: Option<u64>) -> Vec<u64> {
        self.live().map(|peer| peer.connection.id).filter(|id| Some(*id) != except).collect()
    }

    /// Ids of the connections that take part in presence, except `except`.
    pub fn presence_ids_except(&self, except: Option<u64>) -> Vec<u64> {
        self.iter()
            .filter(|peer| peer.connection.in_presence())
            .map(|peer| peer.connection.id)
            .filter(|id| Some(*id) != except)
            .collect()
    }

    /// The room's members: the live connections with the presence right.
    pub fn members(&self) -> Vec<Member> {
        self.iter()
            .filter(|peer| peer.connection.in_presence())
            .map(|peer| peer.connection.member())
            .collect()
    }

    /// Every peer, live or waiting for its `hello`.
    pub fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.0.values()
    }

    fn live(&self) -> impl Iterator<Item = &Peer> {
        self.0.values().filter(|peer| peer.connection.live)
    }
}
