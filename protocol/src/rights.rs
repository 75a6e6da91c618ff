//! What a connection or request may do in one room.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One permission in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Receive events and read state and history.
    Read,
    /// Publish messages and change shared state.
    Write,
    /// See presence and appear in it, and set presence data.
    Presence,
    /// Administer the room (snapshots, restore).
    Admin,
}

impl Right {
    const ALL: [Right; 4] = [Right::Read, Right::Write, Right::Presence, Right::Admin];

    /// Lower-case name, as in tokens and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Presence => "presence",
            Self::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Write => 2,
            Self::Presence => 4,
            Self::Admin => 8,
        }
    }
}

/// A set of [`Right`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rights(u8);

impl Rights {
    /// No rights.
    pub const NONE: Rights = Rights(0);
    /// Every right (anonymous access in local dev mode, and the server itself).
    pub const ALL: Rights = Rights(15);

    /// Whether `right` is in the set.
    pub fn has(self, right: Right) -> bool {
        self.0 & right.bit() != 0
    }

    /// The set with `right` added.
    pub fn with(self, right: Right) -> Self {
        Self(self.0 | right.bit())
    }

    /// Both sets together.
    pub fn union(self, other: Rights) -> Self {
        Self(self.0 | other.0)
    }

    /// Parses a comma-separated list such as `read,write`; unknown names are refused.
    pub fn parse(list: &str) -> Option<Self> {
        list.split(',').map(str::trim).filter(|name| !name.is_empty()).try_fold(Self::NONE, |rights, name| {
            Right::ALL.iter().find(|right| right.as_str() == name).map(|right| rights.with(*right))
        })
    }
}

impl FromIterator<Right> for Rights {
    fn from_iter<I: IntoIterator<Item = Right>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Right::ALL.iter().filter(|r| self.has(**r)).map(|r| r.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_round_trip_as_text() {
        let rights: Rights = [Right::Read, Right::Presence].into_iter().collect();
        assert_eq!(rights.to_string(), "read,presence");
        assert_eq!(Rights::parse("read, presence"), Some(rights));
        assert_eq!(Rights::parse(""), Some(Rights::NONE));
        assert_eq!(Rights::parse("read,fly"), None);
        assert!(Rights::ALL.has(Right::Admin) && !rights.has(Right::Write));
    }
}
