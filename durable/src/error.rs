//! The one error type of the API edge: a stable [`ErrorCode`] and a human message. The objects
//! and the router turn it into a JSON error response (or an `error` frame) in one place.

use edgeroom_protocol::{DecodeError, ErrorCode, HttpError, NameError};

use crate::{CounterError, SnapshotError, StoreError};

/// A refused or failed request: what a client sees as `{"error":{"code","message"}}` with the
/// code's HTTP status, or as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct ApiError {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A malformed request (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// A server-side failure (500): nothing was applied, the request may be retried.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// No such resource or route (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }

    /// The JSON body of the error.
    pub fn body(&self) -> HttpError {
        HttpError::new(self.code, self.message.clone())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::internal(format!("the operation was not applied: {error}"))
    }
}

impl From<DecodeError> for ApiError {
    fn from(error: DecodeError) -> Self {
        Self::new(error.code(), error.to_string())
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        Self::new(ErrorCode::BadName, error.to_string())
    }
}

impl From<SnapshotError> for ApiError {
    fn from(error: SnapshotError) -> Self {
        Self::internal(error.to_string())
    }
}

impl From<CounterError> for ApiError {
    fn from(error: CounterError) -> Self {
        match error {
            CounterError::Overflow { .. } => {
                Self::new(ErrorCode::LimitExceeded, format!("{error}; nothing changed"))
            }
            CounterError::Store(store) => store.into(),
        }
    }
}

/// Parses a JSON object body into `T`, or says clearly why not. serde would also take a JSON
/// array for a struct; the API takes objects only.
pub fn parse_json_object<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(format!("the {what} body must be a JSON object")));
    }
    serde_json::from_slice(bytes).map_err(|error| ApiError::bad_request(format!("bad {what} body: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_codes_and_statuses() {
        let overflow = ApiError::from(CounterError::Overflow { value: i64::MAX, delta: 1 });
        assert_eq!((overflow.code, overflow.status()), (ErrorCode::LimitExceeded, 409));
        let store = ApiError::from(StoreError::BadRow("x"));
        assert_eq!(store.status(), 500);
        let decode = ApiError::from(DecodeError::Empty);
        assert_eq!(decode.code, ErrorCode::MalformedFrame);
        assert_eq!(ApiError::new(ErrorCode::Unavailable, "later").status(), 503);
    }

    #[test]
    fn json_bodies_must_be_objects() {
        #[derive(serde::Deserialize, Debug)]
        struct Body {
            n: u32,
        }
        assert_eq!(parse_json_object::<Body>("test", b" {\"n\":3}").unwrap().n, 3);
        for bad in [&b"[1]"[..], b"", b"{\"n\":\"x\"}", b"\xff"] {
            let error = parse_json_object::<Body>("test", bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest, "{bad:?}");
        }
    }
}
