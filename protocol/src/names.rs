//! Naming rules for tenants and rooms, and the shard key that addresses one Durable Object.

use std::fmt;

/// Longest allowed tenant or room name, in bytes (all allowed characters are ASCII).
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Zero-length name.
    #[error("{what} name must not be empty")]
    Empty {
        /// `tenant`, `room`, …
        what: &'static str,
    },
    /// Longer than [`MAX_NAME_LEN`].
    #[error("{what} name is {len} characters long; at most {MAX_NAME_LEN} are allowed")]
    TooLong {
        /// `tenant`, `room`, …
        what: &'static str,
        /// The name's length.
        len: usize,
    },
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("{what} name may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadCharacter {
        /// `tenant`, `room`, …
        what: &'static str,
    },
    /// `.` or `..`, which HTTP clients rewrite as path segments.
    #[error("{what} name must not be '.' or '..'")]
    DotSegment {
        /// `tenant`, `room`, …
        what: &'static str,
    },
}

/// Checks a tenant or room name: 1 to 128 characters of `[A-Za-z0-9._-]`, and not `.` or `..`.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what, len: name.len() });
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err(NameError::BadCharacter { what });
    }
    if name == "." || name == ".." {
        return Err(NameError::DotSegment { what });
    }
    Ok(())
}

/// A validated tenant and name: the address of one room (or, with the `counter_*` keys, one
/// counter).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomAddress {
    tenant: String,
    room: String,
}

impl RoomAddress {
    /// Validates both names.
    pub fn new(tenant: &str, room: &str) -> Result<Self, NameError> {
        validate_name("tenant", tenant)?;
        validate_name("room", room)?;
        Ok(Self { tenant: tenant.to_owned(), room: room.to_owned() })
    }

    /// The tenant name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The room name.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// The Durable Object name (`<tenant>/room/<room>`): the tenant is part of it, so equal room
    /// names in two tenants are different objects.
    pub fn shard_key(&self) -> String {
        format!("{}/room/{}", self.tenant, self.room)
    }
}

impl RoomAddress {
    /// The KV key of the room's JSON read model (`read:<tenant>/<room>`).
    pub fn read_model_key(&self) -> String {
        format!("read:{}/{}", self.tenant, self.room)
    }
}

/// A validated `tenant/counter` pair: the address of one counter (of all its shards).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterAddress {
    tenant: String,
    name: String,
}

impl CounterAddress {
    /// Validates both names.
    pub fn new(tenant: &str, name: &str) -> Result<Self, NameError> {
        validate_name("tenant", tenant)?;
        validate_name("counter", name)?;
        Ok(Self { tenant: tenant.to_owned(), name: name.to_owned() })
    }

    /// The tenant name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The counter name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Durable Object name of shard `shard` (`<tenant>/counter/<name>/<shard>`); shard 0 is
    /// the counter's home.
    pub fn shard_key(&self, shard: u32) -> String {
        format!("{}/counter/{}/{shard}", self.tenant, self.name)
    }

    /// The KV key of the counter's JSON read model (`counter:<tenant>/<name>`).
    pub fn read_model_key(&self) -> String {
        format!("counter:{}/{}", self.tenant, self.name)
    }
}

impl fmt::Display for CounterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}

impl fmt::Display for RoomAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert!(validate_name("room", "Lobby-1_v2.0").is_ok());
        assert!(validate_name("room", &"a".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn refuses_everything_else() {
        for bad in ["", "a b", "a/b", "ü", "a%2F", ".", "..", "x?y", "tab\t"] {
            assert!(validate_name("room", bad).is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            validate_name("room", &"a".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { len: 129, .. })
        ));
    }

    #[test]
    fn shard_key_separates_tenants() {
        let a = RoomAddress::new("acme", "lobby").unwrap();
        let b = RoomAddress::new("globex", "lobby").unwrap();
        assert_ne!(a.shard_key(), b.shard_key());
        assert_eq!(a.shard_key(), "acme/room/lobby");
    }
}
