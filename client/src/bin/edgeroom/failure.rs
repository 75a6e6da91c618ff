//! Exit codes and the one-line stderr message of a failed command.

use std::fmt;

use edgeroom_client::{Error, ErrorCode, OpError};

/// Exit code: the command failed (server or network error, a refused or lost operation).
pub const FAILED: u8 = 1;
/// Exit code: bad usage or input (arguments, a body that is not JSON, a bad name).
pub const USAGE: u8 = 2;
/// Exit code: the token or admin key is missing, invalid, or lacks the right.
pub const AUTH: u8 = 3;

/// A failed command: its exit code and message.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: USAGE, message: message.into() }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Self { code: FAILED, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = match &error {
            _ if error.is_auth() => AUTH,
            Error::InvalidOptions(_) => USAGE,
            Error::Http { status: 400 | 404 | 413, .. } => USAGE,
            _ => FAILED,
        };
        Self { code, message: error.to_string() }
    }
}

impl From<OpError> for Failure {
    fn from(error: OpError) -> Self {
        let code = match &error {
            OpError::Refused { code: ErrorCode::Forbidden | ErrorCode::Unauthorized, .. } => AUTH,
            OpError::Refused { code: ErrorCode::BadRequest | ErrorCode::TooLarge, .. }
            | OpError::InvalidBody(_)
            | OpError::TooLarge { .. } => USAGE,
            _ => FAILED,
        };
        Self { code, message: error.to_string() }
    }
}

/// Parses JSON given on the command line.
pub fn json_arg(what: &str, text: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text).map_err(|e| {
        Failure::usage(format!("{what} is not JSON ({e}); quote strings as JSON, e.g. '\"hello\"'"))
    })
}

/// Splits `tenant/name` and checks both names (`what` is `room` or `counter`).
pub fn address(what: &'static str, text: &str) -> Result<(String, String), Failure> {
    let Some((tenant, name)) = text.split_once('/') else {
        return Err(Failure::usage(format!("{text:?} should be tenant/name, e.g. acme/lobby")));
    };
    edgeroom_client::validate_name("tenant", tenant).map_err(|e| Failure::usage(e.to_string()))?;
    edgeroom_client::validate_name(what, name).map_err(|e| Failure::usage(e.to_string()))?;
    Ok((tenant.to_owned(), name.to_owned()))
}
