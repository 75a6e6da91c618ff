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

use base64::Engine as _;
use edgeroom_protocol::{Right, Rights};
use hmac::{Hmac, Mac};
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
    /// The tenant has no signing key on this server (minting only: a presented token with an
    /// unknown tenant or key is a [`AuthError::BadSignature`], so tokens cannot probe tenants).
    #[error("no signing key is configured for tenant {0:?}")]
    UnknownTenant(String),
    /// The signature does not match any key of the token's tenant (or the tenant or the `kid` is
    /// unknown: the same answer, on purpose).
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

/// Shortest signing secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// One signing key of a tenant. Tokens name theirs in the JWT `kid` header.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SigningKey {
    /// The key id tokens carry as `kid` (none for a tenant's single legacy secret).
    #[serde(default)]
    pub kid: Option<String>,
    /// The HMAC-SHA256 secret.
    pub secret: String,
}

/// How `TENANT_SECRETS` may name a tenant's keys: one secret, or a list (the first signs).
#[derive(Deserialize)]
#[serde(untagged)]
enum KeysJson {
    One(String),
    Many(Vec<SigningKey>),
}

/// The signing keys of each tenant, from the `TENANT_SECRETS` secret: a JSON object whose values
/// are either one secret, `{"acme": "<secret>"}`, or a list of keys for rotation,
/// `{"acme": [{"kid": "2026-11", "secret": "…"}, {"kid": "2026-10", "secret": "…"}]}`. The first
/// key of a list signs new tokens; every listed key verifies them.
#[derive(Debug, Clone, Default)]
pub struct TenantSecrets(HashMap<String, Vec<SigningKey>>);

impl TenantSecrets {
    /// Parses and checks the JSON object of keys: every secret at least [`MIN_SECRET_BYTES`]
    /// long, key ids unique within a tenant.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let map: HashMap<String, KeysJson> = serde_json::from_str(text).map_err(|e| {
            format!("TENANT_SECRETS must be a JSON object of secrets or lists of {{kid, secret}}: {e}")
        })?;
        let mut tenants = HashMap::new();
        for (tenant, keys) in map {
            let keys = match keys {
                KeysJson::One(secret) => vec![SigningKey { kid: None, secret }],
                KeysJson::Many(keys) => keys,
            };
            if keys.is_empty() {
                return Err(format!("TENANT_SECRETS lists no key for tenant {tenant:?}"));
            }
            for (i, key) in keys.iter().enumerate() {
                if key.secret.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "TENANT_SECRETS: a secret of tenant {tenant:?} is shorter than {MIN_SECRET_BYTES} bytes"
                    ));
                }
                if keys.iter().skip(i + 1).any(|other| other.kid == key.kid) {
                    return Err(format!("TENANT_SECRETS: tenant {tenant:?} names a key id twice"));
                }
            }
            tenants.insert(tenant, keys);
        }
        Ok(Self(tenants))
    }

    /// The key that signs new tokens of `tenant`.
    fn signing_key(&self, tenant: &str) -> Option<&SigningKey> {
        self.0.get(tenant).and_then(|keys| keys.first())
    }

    /// The keys a token of `tenant` with `kid` may be signed with: the named one, or every key
    /// when the token names none.
    fn verifying_keys<'a>(
        &'a self,
        tenant: &str,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a SigningKey> {
        self.0.get(tenant).into_iter().flatten().filter(move |key| kid.is_none() || key.kid.as_deref() == kid)
    }
}

/// The JOSE header of a token: only the fields edgeroom reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    /// The signing algorithm; only `HS256` is accepted.
    alg: String,
    /// The id of the signing key, if the tenant has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

/// base64url without padding, as JWTs use it; padding is tolerated when decoding.
const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// The three parts of a compact JWS, decoded but not verified.
struct Parts<'a> {
    header: Header,
    claims: Claims,
    /// `header.claims`, the bytes the signature covers.
    signed: &'a str,
    signature: Vec<u8>,
}

fn malformed(what: &str, error: impl std::fmt::Display) -> AuthError {
    AuthError::Malformed(format!("{what}: {error}"))
}

/// Splits and decodes `token` (header, claims and signature), checking its shape only.
fn parse(token: &str) -> Result<Parts<'_>, AuthError> {
    let (signed, signature) =
        token.rsplit_once('.').ok_or_else(|| AuthError::Malformed("not three parts".to_owned()))?;
    let (header, claims) =
        signed.split_once('.').ok_or_else(|| AuthError::Malformed("not three parts".to_owned()))?;
    if claims.contains('.') {
        return Err(AuthError::Malformed("more than three parts".to_owned()));
    }
    let header = B64.decode(header).map_err(|e| malformed("header", e))?;
    let header: Header = serde_json::from_slice(&header).map_err(|e| malformed("header", e))?;
    let claims = B64.decode(claims).map_err(|e| malformed("claims", e))?;
    let claims: Claims = serde_json::from_slice(&claims).map_err(|e| malformed("claims", e))?;
    let signature = B64.decode(signature).map_err(|e| malformed("signature", e))?;
    Ok(Parts { header, claims, signed, signature })
}

/// Reads the `kid` header of a token without verifying it (for tools and tests).
pub fn token_key_id(token: &str) -> Result<Option<String>, AuthError> {
    Ok(parse(token)?.header.kid)
}

/// Verifies `token` (signature in constant time, algorithm, `exp`, `nbf`) at `now_secs`.
pub fn verify(token: &str, secrets: &TenantSecrets, now_secs: u64) -> Result<Claims, AuthError> {
    let parts = parse(token)?;
    if parts.header.alg != "HS256" {
        return Err(AuthError::WrongAlgorithm);
    }
    // Unknown tenants and key ids fail like a bad signature: nothing tells them apart.
    let verified = secrets.verifying_keys(&parts.claims.tenant, parts.header.kid.as_deref()).any(|key| {
        hmac_key(&key.secret).is_ok_and(|mut mac| {
            mac.update(parts.signed.as_bytes());
            // `verify_slice` compares in constant time.
            mac.verify_slice(&parts.signature).is_ok()
        })
    });
    if !verified {
        return Err(AuthError::BadSignature);
    }
    let claims = parts.claims;
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
    sign_with_key(claims, &SigningKey { kid: None, secret: secret.to_owned() })
}

/// Signs `claims` with `key`, naming it in the `kid` header when it has an id.
pub fn sign_with_key(claims: &Claims, key: &SigningKey) -> Result<String, AuthError> {
    let header = Header { alg: "HS256".to_owned(), kid: key.kid.clone() };
    let header = serde_json::to_vec(&header).map_err(|e| malformed("header", e))?;
    let claims = serde_json::to_vec(claims).map_err(|e| malformed("claims", e))?;
    let mut token = B64.encode(header);
    token.push('.');
    token.push_str(&B64.encode(claims));
    let mut mac = hmac_key(&key.secret)?;
    mac.update(token.as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    token.push('.');
    token.push_str(&signature);
    Ok(token)
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
        let key = secrets.signing_key(tenant).ok_or_else(|| AuthError::UnknownTenant(tenant.to_owned()))?;
        if self.sub.is_empty() {
            return Err(AuthError::BadRequest("sub must not be empty".to_owned()));
        }
        let ttl = self.ttl_secs.unwrap_or(3600);
        if !(1..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
            return Err(AuthError::BadRequest(format!("ttl_secs must be 1 to {MAX_TOKEN_TTL_SECS}")));
        }
        let exp = now_secs.saturating_add(ttl);
        let claims = Claims { sub: self.sub, tenant: tenant.to_owned(), rooms: self.rooms, exp, nbf: None };
        Ok(TokenResponse { token: sign_with_key(&claims, key)?, exp })
    }
}

pub use edgeroom_protocol::is_loopback_host;

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
        TenantSecrets::from_json(r#"{"acme":"acme-secret-0123456789","globex":"globex-secret-0123456789"}"#)
            .unwrap()
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
        let token = sign(&claims("acme"), "acme-secret-0123456789").unwrap();
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
        let forged = sign(&claims("acme"), "not-the-secret-0123456789").unwrap();
        assert_eq!(verify(&forged, &secrets(), NOW), Err(AuthError::BadSignature));
        // Claims rewritten after signing: the signature no longer matches.
        let token = sign(&claims("acme"), "acme-secret-0123456789").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims("acme");
        other.rooms[0].room = "*".into();
        let other_token = sign(&other, "acme-secret-0123456789").unwrap();
        let spliced = format!("{}.{}.{}", parts[0], other_token.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(verify(&spliced, &secrets(), NOW), Err(AuthError::BadSignature));

        assert_eq!(verify(&token, &secrets(), NOW + 60), Err(AuthError::Expired));
        let mut early = claims("acme");
        early.nbf = Some(NOW + 10);
        let early = sign(&early, "acme-secret-0123456789").unwrap();
        assert_eq!(verify(&early, &secrets(), NOW), Err(AuthError::NotYetValid));
        assert!(verify(&early, &secrets(), NOW + 10).is_ok());

        let unknown = sign(&claims("initech"), "whatever-whatever").unwrap();
        assert_eq!(
            verify(&unknown, &secrets(), NOW),
            Err(AuthError::BadSignature),
            "no hint the tenant is unknown"
        );
        // A token for acme signed with globex's secret.
        let cross = sign(&claims("acme"), "globex-secret-0123456789").unwrap();
        assert_eq!(verify(&cross, &secrets(), NOW), Err(AuthError::BadSignature));
        assert!(matches!(verify("a.b", &secrets(), NOW), Err(AuthError::Malformed(_))));
        assert!(matches!(verify("", &secrets(), NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn other_algorithms_are_refused() {
        // {"alg":"none"} with valid claims and no signature.
        let claims_part =
            sign(&claims("acme"), "acme-secret-0123456789").unwrap().split('.').nth(1).unwrap().to_owned();
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
    fn keys_rotate_by_kid_and_tokens_without_kid_try_every_key() {
        let rotated = TenantSecrets::from_json(
            r#"{"acme":[{"kid":"new","secret":"new-secret-0123456789"},{"kid":"old","secret":"old-secret-0123456789"}]}"#,
        )
        .unwrap();
        let old_key = SigningKey { kid: Some("old".into()), secret: "old-secret-0123456789".into() };
        let old_token = sign_with_key(&claims("acme"), &old_key).unwrap();
        assert!(verify(&old_token, &rotated, NOW).is_ok(), "tokens of the old key keep working");
        let wrong_kid =
            sign_with_key(&claims("acme"), &SigningKey { kid: Some("new".into()), ..old_key.clone() })
                .unwrap();
        assert_eq!(verify(&wrong_kid, &rotated, NOW), Err(AuthError::BadSignature), "a kid names one key");
        let unknown_kid =
            sign_with_key(&claims("acme"), &SigningKey { kid: Some("gone".into()), ..old_key }).unwrap();
        assert_eq!(verify(&unknown_kid, &rotated, NOW), Err(AuthError::BadSignature));
        let no_kid = sign(&claims("acme"), "old-secret-0123456789").unwrap();
        assert!(verify(&no_kid, &rotated, NOW).is_ok(), "no kid: every key is tried");
        // New tokens are signed with the first key and name it.
        let minted = TokenRequest { sub: "x".into(), rooms: vec![], ttl_secs: None }
            .mint("acme", &rotated, NOW)
            .unwrap();
        assert_eq!(token_key_id(&minted.token).unwrap().as_deref(), Some("new"));
        // Retire the old key: its tokens stop working.
        let retired =
            TenantSecrets::from_json(r#"{"acme":[{"kid":"new","secret":"new-secret-0123456789"}]}"#).unwrap();
        assert_eq!(verify(&old_token, &retired, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn tokens_from_other_jwt_libraries_verify() {
        // Made with Python's hmac/base64/json, with a `typ` header and a `kid`.
        let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiJhZGEiLCJ0ZW5hbnQiOiJhY21lIiwicm9vbXMiOlt7InJvb20iOiJsb2JieSIsInJpZ2h0cyI6WyJyZWFkIl19XSwiZXhwIjoxODAwMDAwMDYwfQ.hM3hkbWntAJo7v0dC0RfStcAuwXqi0qbQv1fu5rcwUM";
        let keys =
            TenantSecrets::from_json(r#"{"acme":[{"kid":"k1","secret":"acme-secret-0123456789"}]}"#).unwrap();
        let claims = verify(token, &keys, NOW).unwrap();
        assert_eq!((claims.sub.as_str(), claims.exp), ("ada", NOW + 60));
        assert_eq!(claims.rights_in("acme", "lobby").to_string(), "read");
        // Our own tokens: `{"alg":"HS256"}` plus `kid` when the key has one, unpadded base64url.
        let ours = sign(&claims, "acme-secret-0123456789").unwrap();
        assert!(ours.starts_with("eyJhbGciOiJIUzI1NiJ9."), "{ours}");
        assert!(!ours.contains('='));
        // A flipped signature bit, a fourth part, bad base64 and bad JSON are refused.
        let mut flipped = token.to_owned();
        flipped.replace_range(token.len() - 2..token.len() - 1, "A");
        assert_eq!(verify(&flipped, &keys, NOW), Err(AuthError::BadSignature));
        for bad in [format!("{token}.x"), format!("!{token}"), "e30.e30.".to_owned(), "..".to_owned()] {
            assert!(matches!(verify(&bad, &keys, NOW), Err(AuthError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn weak_or_ambiguous_secrets_are_refused_at_load() {
        assert!(TenantSecrets::from_json(r#"{"acme":"short"}"#).unwrap_err().contains("shorter than 16"));
        assert!(TenantSecrets::from_json(r#"{"acme":[]}"#).is_err());
        let twice =
            r#"{"acme":[{"kid":"a","secret":"0123456789abcdef"},{"kid":"a","secret":"fedcba9876543210"}]}"#;
        assert!(TenantSecrets::from_json(twice).unwrap_err().contains("twice"));
        assert!(TenantSecrets::from_json(r#"{"acme":1}"#).is_err());
    }

    #[test]
    fn only_loopback_hosts_count_as_local() {
        for host in ["127.0.0.1", "localhost", "[::1]", "127.3.4.5", "LOCALHOST"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["edgeroom.example.com", "10.0.0.1", "0.0.0.0", "localhost.evil.com", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
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
