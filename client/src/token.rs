//! [`TokenSource`]: where a client gets the token for each connection.

use std::sync::Arc;

use futures_util::future::BoxFuture;

/// Produces the token for each connection attempt (for example by asking your backend), so a
/// long-lived client outlives the expiry of its tokens. An `Err` counts as a failed attempt and is
/// retried with backoff.
pub type TokenSource = Arc<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// How a client authenticates.
#[derive(Clone, Default)]
pub(crate) enum Credentials {
    /// No token (local dev servers only).
    #[default]
    None,
    /// The same token for every connection.
    Fixed(String),
    /// A fresh token for every connection.
    Source(TokenSource),
}

impl Credentials {
    pub(crate) fn new(token: Option<String>, source: Option<TokenSource>) -> Self {
        match (source, token) {
            (Some(source), _) => Self::Source(source),
            (None, Some(token)) => Self::Fixed(token),
            (None, None) => Self::None,
        }
    }

    /// The token for the next connection.
    pub(crate) async fn token(&self) -> Result<Option<String>, crate::Error> {
        match self {
            Self::None => Ok(None),
            Self::Fixed(token) => Ok(Some(token.clone())),
            Self::Source(source) => source().await.map(Some).map_err(crate::Error::TokenSource),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a token.
        f.write_str(match self {
            Self::None => "None",
            Self::Fixed(_) => "Fixed(…)",
            Self::Source(_) => "Source(…)",
        })
    }
}
