//! Authentication and authorization of edgeroom, free of the `worker` crate so it is tested
//! natively.
//!
//! Clients present an HS256 JSON Web Token signed with their tenant's secret. Its claims name the
//! subject, the tenant, the rooms it may use (exact names, a `prefix*`, or `*`) with rights in
//! each, and its validity window. The admin API is guarded by a separate admin key.

// A panic in wasm resets every object in the isolate: request paths must not panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
#![warn(missing_docs)]

use std::collections::HashMap;

use edgeroom_protocol::{Right, Rights};
use hmac::{Hmac, Mac};
use jwt::{AlgorithmType, Header, SignWithKey, Token, VerifyWithKey};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a token was refused. Every variant is an HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and anonymous access is off.
    #[error("a token is required: send `Authorization: Bearer <token>` or `?token=`")]
    Missing,
    /// Not three base64url parts with JSON header and claims of the expected shape.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Signed with another algorithm than HS256.
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    /// The token's tenant has no secret on this server.
    #[error("no secret is configured for tenant {0:?}")]
    UnknownTenant(String),
    /// The signature does not match the tenant's secret.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` is in the past.
    #[error("the token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A token request asks for something impossible.
    #[error("bad token request: {0}")]
    BadRequest(String),
}

/// Rights in the rooms whose names match `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomGrant {
    /// An exact room name, `prefix*` for every room starting with `prefix`, or `*` for all rooms.
    pub room: String,
    /// The rights granted there.
    pub rights: Vec<Right>,
}

impl RoomGrant {
    /// Whether this grant covers `room`.
    pub fn matches(&self, room: &str) -> bool {
        match self.room.strip_suffix('*') {
            Some(prefix) => room.starts_with(prefix),
            None => self.room == room,
        }
    }
}

/// The claims of an edgeroom token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id; connections show it as their `user`.
    pub sub: String,
    /// The only tenant the token is valid for.
    pub tenant: String,
    /// Room grants; rights of every matching grant add up.
    #[serde(default)]
    pub rooms: Vec<RoomGrant>,
    /// Expiry, in seconds since the Unix epoch (required).
    pub exp: u64,
    /// Not valid before, in seconds since the Unix epoch.
    #[serde(default)]
    pub nbf: Option<u64>,
}

impl Claims {
    /// The rights these claims give in `room` of `tenant` (none in any other tenant).
    pub fn rights_in(&self, tenant: &str, room: &str) -> Rights {
        if self.tenant != tenant {
            return Rights::NONE;
        }
        self.rooms
            .iter()
            .filter(|grant| grant.matches(room))
            .fold(Rights::NONE, |rights, grant| rights.union(grant.rights.iter().copied().collect()))
    }
}

/// The signing secret of each tenant, from the `TENANT_SECRETS` secret: a JSON object
/// `{"<tenant>": "<secret>", …}`.
#[derive(Debug, Clone, Default)]
pub struct TenantSecrets(HashMap<String, String>);

impl TenantSecrets {
    /// Parses the JSON object of secrets.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let map: HashMap<String, String> = serde_json::from_str(text)
            .map_err(|e| format!("TENANT_SECRETS must be a JSON object of strings: {e}"))?;
        Ok(Self(map))
    }

    fn get(&self, tenant: &str) -> Option<&str> {
        self.0.get(tenant).map(String::as_str).filter(|secret| !secret.is_empty())
    }
}

/// Verifies `token` (signature in constant time, algorithm, `exp`, `nbf`) at `now_secs`.
pub fn verify(token: &str, secrets: &TenantSecrets, now_secs: u64) -> Result<Claims, AuthError> {
    let unverified: Token<Header, Claims, _> =
        Token::parse_unverified(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
    if unverified.header().algorithm != AlgorithmType::Hs256 {
        return Err(AuthError::WrongAlgorithm);
    }
    let tenant = unverified.claims().tenant.clone();
    let secret = secrets.get(&tenant).ok_or_else(|| AuthError::UnknownTenant(tenant.clone()))?;
    let key = hmac_key(secret)?;
    let verified: Token<Header, Claims, _> = token.verify_with_key(&key).map_err(|e| match e {
        jwt::Error::InvalidSignature | jwt::Error::RustCryptoMac(_) => AuthError::BadSignature,
        other => AuthError::Malformed(other.to_string()),
    })?;
    let claims = verified.claims().clone();
    if now_secs >= claims.exp {
        return Err(AuthError::Expired);
    }
    if claims.nbf.is_some_and(|nbf| now_secs < nbf) {
        return Err(AuthError::NotYetValid);
    }
    Ok(claims)
}

/// Signs `claims` with `secret` (HS256). For operators minting tokens, the CLI and tests; in
/// production, tokens come from your own backend, which holds the tenant secret.
pub fn sign(claims: &Claims, secret: &str) -> Result<String, AuthError> {
    let header = Header { algorithm: AlgorithmType::Hs256, ..Header::default() };
    let token = Token::new(header, claims.clone())
        .sign_with_key(&hmac_key(secret)?)
        .map_err(|e| AuthError::Malformed(e.to_string()))?;
    Ok(token.as_str().to_owned())
}

fn hmac_key(secret: &str) -> Result<Hmac<Sha256>, AuthError> {
    Hmac::new_from_slice(secret.as_bytes()).map_err(|e| AuthError::Malformed(e.to_string()))
}

/// Compares a presented admin key with the configured one in constant time. An empty configured
/// key never matches, so an unset `ADMIN_KEY` closes the admin API.
pub fn admin_key_matches(configured: &str, presented: &str) -> bool {
    !configured.is_empty() && bool::from(configured.as_bytes().ct_eq(presented.as_bytes()))
}

/// Body of `POST /v1/admin/t/{tenant}/tokens`: what the minted token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    /// The user id.
    pub sub: String,
    /// Room grants.
    pub rooms: Vec<RoomGrant>,
    /// Lifetime in seconds (default 3,600; at most [`MAX_TOKEN_TTL_SECS`]).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Longest lifetime of a minted token: 30 days.
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Answer of the token route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The signed token.
    pub token: String,
    /// Its expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

impl TokenRequest {
    /// Mints the token for `tenant` at `now_secs`, signed with the tenant's secret.
    pub fn mint(
        self,
        tenant: &str,
        secrets: &TenantSecrets,
        now_secs: u64,
    ) -> Result<TokenResponse, AuthError> {
        let secret = secrets.get(tenant).ok_or_else(|| AuthError::UnknownTenant(tenant.to_owned()))?;
        if self.sub.is_empty() {
            return Err(AuthError::BadRequest("sub must not be empty".to_owned()));
        }
        let ttl = self.ttl_secs.unwrap_or(3600);
        if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
            return Err(AuthError::BadRequest(format!("ttl_secs must be 1 to {MAX_TOKEN_TTL_SECS}")));
        }
        let exp = now_secs.saturating_add(ttl);
        let claims = Claims { sub: self.sub, tenant: tenant.to_owned(), rooms: self.rooms, exp, nbf: None };
        Ok(TokenResponse { token: sign(&claims, secret)?, exp })
    }
}

/// Whether requests without a token are allowed (the `AUTH_MODE` var).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Tokens are required (the default, and the only mode of the production config).
    Token,
    /// Local development: requests without a token get every right. Tokens still count when sent.
    Dev,
}

impl AuthMode {
    /// Reads the `AUTH_MODE` var: `dev` enables anonymous access, anything else requires tokens.
    pub fn from_var(value: Option<&str>) -> Self {
        match value {
            Some("dev") => Self::Dev,
            _ => Self::Token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn secrets() -> TenantSecrets {
        TenantSecrets::from_json(r#"{"acme":"acme-secret","globex":"globex-secret"}"#).unwrap()
    }

    fn claims(tenant: &str) -> Claims {
        Claims {
            sub: "ada".into(),
            tenant: tenant.into(),
            rooms: vec![
                RoomGrant { room: "lobby".into(), rights: vec![Right::Read, Right::Write] },
                RoomGrant { room: "team-*".into(), rights: vec![Right::Read] },
                RoomGrant { room: "team-red".into(), rights: vec![Right::Presence] },
            ],
            exp: NOW + 60,
            nbf: None,
        }
    }

    #[test]
    fn a_valid_token_verifies_and_grants_per_room_rights() {
        let token = sign(&claims("acme"), "acme-secret").unwrap();
        let verified = verify(&token, &secrets(), NOW).unwrap();
        assert_eq!(verified, claims("acme"));
        assert_eq!(verified.rights_in("acme", "lobby").to_string(), "read,write");
        assert_eq!(verified.rights_in("acme", "team-red").to_string(), "read,presence");
        assert_eq!(verified.rights_in("acme", "team-blue").to_string(), "read");
        assert_eq!(verified.rights_in("acme", "kitchen"), Rights::NONE);
        assert_eq!(verified.rights_in("globex", "lobby"), Rights::NONE, "never another tenant");
    }

    #[test]
    fn forged_expired_early_and_foreign_tokens_are_refused() {
        let forged = sign(&claims("acme"), "not-the-secret").unwrap();
        assert_eq!(verify(&forged, &secrets(), NOW), Err(AuthError::BadSignature));
        // Claims rewritten after signing: the signature no longer matches.
        let token = sign(&claims("acme"), "acme-secret").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims("acme");
        other.rooms[0].room = "*".into();
        let other_token = sign(&other, "acme-secret").unwrap();
        let spliced = format!("{}.{}.{}", parts[0], other_token.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(verify(&spliced, &secrets(), NOW), Err(AuthError::BadSignature));

        assert_eq!(verify(&token, &secrets(), NOW + 60), Err(AuthError::Expired));
        let mut early = claims("acme");
        early.nbf = Some(NOW + 10);
        let early = sign(&early, "acme-secret").unwrap();
        assert_eq!(verify(&early, &secrets(), NOW), Err(AuthError::NotYetValid));
        assert!(verify(&early, &secrets(), NOW + 10).is_ok());

        let unknown = sign(&claims("initech"), "whatever").unwrap();
        assert_eq!(verify(&unknown, &secrets(), NOW), Err(AuthError::UnknownTenant("initech".into())));
        // A token for acme signed with globex's secret.
        let cross = sign(&claims("acme"), "globex-secret").unwrap();
        assert_eq!(verify(&cross, &secrets(), NOW), Err(AuthError::BadSignature));
        assert!(matches!(verify("a.b", &secrets(), NOW), Err(AuthError::Malformed(_))));
        assert!(matches!(verify("", &secrets(), NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn other_algorithms_are_refused() {
        // {"alg":"none"} with valid claims and no signature.
        let claims_part = sign(&claims("acme"), "acme-secret").unwrap().split('.').nth(1).unwrap().to_owned();
        let none = format!("eyJhbGciOiJub25lIn0.{claims_part}.");
        assert_eq!(verify(&none, &secrets(), NOW), Err(AuthError::WrongAlgorithm));
    }

    #[test]
    fn minted_tokens_verify_with_the_tenant_secret() {
        let request = TokenRequest {
            sub: "bot".into(),
            rooms: vec![RoomGrant { room: "*".into(), rights: vec![Right::Read] }],
            ttl_secs: Some(10),
        };
        let minted = request.clone().mint("acme", &secrets(), NOW).unwrap();
        assert_eq!(minted.exp, NOW + 10);
        let claims = verify(&minted.token, &secrets(), NOW).unwrap();
        assert_eq!(claims.rights_in("acme", "any").to_string(), "read");
        assert_eq!(request.mint("initech", &secrets(), NOW), Err(AuthError::UnknownTenant("initech".into())));
    }

    #[test]
    fn admin_key_comparison() {
        assert!(admin_key_matches("k3y", "k3y"));
        assert!(!admin_key_matches("k3y", "k3z"));
        assert!(!admin_key_matches("", ""));
        assert_eq!(AuthMode::from_var(Some("dev")), AuthMode::Dev);
        assert_eq!(AuthMode::from_var(None), AuthMode::Token);
        assert_eq!(AuthMode::from_var(Some("DEV")), AuthMode::Token);
    }
}
