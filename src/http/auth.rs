//! JWT bearer authentication of the mutating routes and `/dbs_and_roles`.
//!
//! Keys come from a JSON Web Key Set (`--jwks`): Ed25519 (`kty: OKP`,
//! algorithm EdDSA) and RSA (RS256, or the RSA algorithm the key names).
//! A token is accepted when it is signed by one of them, carries an `exp`
//! in the future (60 s leeway), and either
//! - has `scope` containing `compute_ctl:admin` and audience `compute`, or
//! - has a `compute_id` claim equal to this compute's `--compute-id`.
//!
//! The key set can change at run time ([`AuthSlot`]): `--jwks` at start,
//! then the one a control plane sends as `compute_ctl_config.jwks` in its
//! spec response or in `POST /configure` (as Neon's control plane does). A
//! compute started without keys turns auth on when it receives some.
//!
//! Status codes: **400** (as Neon) when there is no `Authorization: Bearer`
//! header at all. **401** when we cannot tell who is calling: a token that
//! is not a JWT, not signed by a
//! configured key, expired or not yet valid. **403** when the token is
//! genuine but grants nothing here: admin scope with another audience, a
//! `compute_id` of another compute, or neither claim. Times are read from
//! the Env clock, so the simulator controls expiry. Tokens are never logged.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use crate::env::Env;

/// The scope that grants everything.
pub const ADMIN_SCOPE: &str = "compute_ctl:admin";
/// The audience an admin token must name.
pub const AUDIENCE: &str = "compute";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// A key set that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(
        "the JWKS is not a JSON Web Key Set ({0}); expected {{\"keys\": [{{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\": ...}}, ...]}}"
    )]
    Parse(#[from] serde_json::Error),
    #[error("JWKS key #{index} (kid {kid:?}): {reason}")]
    Key {
        index: usize,
        kid: Option<String>,
        reason: String,
    },
    #[error(
        "the JWKS holds no signature key; add an Ed25519 (OKP) or RSA public key, or start without --jwks to disable auth"
    )]
    Empty,
}

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The configured verifier.
pub struct Auth {
    keys: Vec<VerifyKey>,
    compute_id: Option<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("compute_id", &self.compute_id)
            .finish()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub status: StatusCode,
    pub reason: String,
}

impl Denied {
    fn bad_request(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
        }
    }

    fn unauthenticated(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    fn forbidden(reason: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

/// Who the caller is, once accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Compute,
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(v) => v.iter().any(|a| a == want),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    exp: Option<u64>,
    nbf: Option<u64>,
    aud: Option<Audience>,
    /// Space-separated scopes (OAuth style); Neon sends exactly one.
    scope: Option<String>,
    compute_id: Option<String>,
}

fn key_algorithm(index: usize, jwk: &jsonwebtoken::jwk::Jwk) -> Result<Algorithm, JwksError> {
    let err = |reason: String| JwksError::Key {
        index,
        kid: jwk.common.key_id.clone(),
        reason,
    };
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => match declared
        {
            None | Some(KeyAlgorithm::EdDSA) => Ok(Algorithm::EdDSA),
            Some(other) => Err(err(format!(
                "an Ed25519 key must be used with EdDSA, not {other:?}"
            ))),
        },
        AlgorithmParameters::OctetKeyPair(p) => Err(err(format!(
            "unsupported OKP curve {:?}; only Ed25519 is supported",
            p.curve
        ))),
        AlgorithmParameters::RSA(_) => match declared {
            None | Some(KeyAlgorithm::RS256) => Ok(Algorithm::RS256),
            Some(KeyAlgorithm::RS384) => Ok(Algorithm::RS384),
            Some(KeyAlgorithm::RS512) => Ok(Algorithm::RS512),
            Some(KeyAlgorithm::PS256) => Ok(Algorithm::PS256),
            Some(KeyAlgorithm::PS384) => Ok(Algorithm::PS384),
            Some(KeyAlgorithm::PS512) => Ok(Algorithm::PS512),
            Some(other) => Err(err(format!("an RSA key cannot be used with {other:?}"))),
        },
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKey(_) => Err(err(
            "unsupported key type; only Ed25519 (kty OKP) and RSA keys are supported".into(),
        )),
    }
}

impl Auth {
    /// Loads the key set (the text of the `--jwks` file). Keys marked
    /// `"use": "enc"` are skipped; any other unusable key is an error, so a
    /// typo in the key set fails at start rather than on the first request.
    pub fn from_jwks(json: &str, compute_id: Option<String>) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(json)?;
        let mut keys = Vec::new();
        for (index, jwk) in set.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let alg = key_algorithm(index, jwk)?;
            let key = DecodingKey::from_jwk(jwk).map_err(|e| JwksError::Key {
                index,
                kid: jwk.common.key_id.clone(),
                reason: format!("cannot decode the key: {e}"),
            })?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self { keys, compute_id })
    }

    /// How many verification keys are configured.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Checks the `Authorization` header of a request at wall-clock `now`.
    pub fn authorize(&self, headers: &HeaderMap, now: SystemTime) -> Result<Grant, Denied> {
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            Denied::bad_request("missing Authorization header; send Authorization: Bearer <JWT>")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Denied::bad_request(
                    "the Authorization header is not a bearer token; send Authorization: Bearer <JWT>",
                )
            })?;
        let claims = self.verify(token)?;
        check_times(&claims, now)?;
        self.grant(&claims)
    }

    /// Verifies the signature against the configured keys and decodes the claims.
    fn verify(&self, token: &str) -> Result<Claims, Denied> {
        let head = jsonwebtoken::decode_header(token).map_err(|e| {
            Denied::unauthenticated(format!("the bearer token is not a well-formed JWT ({e})"))
        })?;
        let candidates: Vec<&VerifyKey> = self
            .keys
            .iter()
            .filter(|k| k.alg == head.alg)
            .filter(|k| match (&head.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(Denied::unauthenticated(format!(
                "no configured key verifies {:?} tokens{}; the token was not issued for this compute's key set",
                head.alg,
                head.kid
                    .as_deref()
                    .map(|k| format!(" with kid {k:?}"))
                    .unwrap_or_default()
            )));
        }
        let mut last = None;
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.validate_exp = false;
            v.validate_nbf = false;
            v.validate_aud = false;
            v.set_required_spec_claims::<&str>(&[]);
            match jsonwebtoken::decode::<Claims>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = Some(e),
            }
        }
        use jsonwebtoken::errors::ErrorKind;
        Err(match last.as_ref().map(|e| e.kind()) {
            Some(ErrorKind::InvalidSignature) | None => Denied::unauthenticated(
                "the token's signature does not verify against any configured key",
            ),
            Some(kind) => {
                Denied::unauthenticated(format!("the token cannot be decoded ({kind:?})"))
            }
        })
    }

    fn grant(&self, claims: &Claims) -> Result<Grant, Denied> {
        let admin_scope = claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|x| x == ADMIN_SCOPE));
        let audience_ok = claims.aud.as_ref().is_some_and(|a| a.contains(AUDIENCE));
        if admin_scope && audience_ok {
            return Ok(Grant::Admin);
        }
        if let (Some(have), Some(want)) = (&claims.compute_id, &self.compute_id) {
            if have == want {
                return Ok(Grant::Compute);
            }
        }
        Err(Denied::forbidden(if admin_scope {
            format!(
                "the admin token's audience is not {AUDIENCE:?}; request a token for audience {AUDIENCE:?}"
            )
        } else if claims.compute_id.is_some() {
            "the token's compute_id is not this compute's --compute-id; use a token issued for this compute".to_string()
        } else {
            format!("the token grants neither scope {ADMIN_SCOPE:?} nor this compute's compute_id")
        }))
    }
}

fn check_times(claims: &Claims, now: SystemTime) -> Result<(), Denied> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let leeway = LEEWAY.as_secs();
    let exp = claims
        .exp
        .ok_or_else(|| Denied::unauthenticated("the token has no exp claim; tokens must expire"))?;
    if exp.saturating_add(leeway) < now {
        return Err(Denied::unauthenticated(format!(
            "the token expired {} s ago; get a fresh one",
            now - exp
        )));
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now.saturating_add(leeway) {
            return Err(Denied::unauthenticated(format!(
                "the token is not valid for another {} s (nbf)",
                nbf - now
            )));
        }
    }
    Ok(())
}

/// The verifier in effect; empty while auth is off. Cloning shares it.
#[derive(Clone, Default)]
pub struct AuthSlot(Arc<RwLock<Option<Arc<Auth>>>>);

impl std::fmt::Debug for AuthSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AuthSlot").field(&self.get()).finish()
    }
}

impl AuthSlot {
    pub fn new(auth: Option<Auth>) -> Self {
        Self(Arc::new(RwLock::new(auth.map(Arc::new))))
    }

    /// The verifier now, if auth is on.
    pub fn get(&self) -> Option<Arc<Auth>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the verifier (auth is on from now on).
    pub fn set(&self, auth: Auth) {
        tracing::info!(
            keys = auth.key_count(),
            "HTTP API authentication key set replaced"
        );
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(auth));
    }

    /// Installs the key set of a control plane's `compute_ctl_config.jwks`
    /// (a JWKS as JSON), for `compute_id`.
    pub fn set_jwks(
        &self,
        jwks: &serde_json::Value,
        compute_id: Option<String>,
    ) -> Result<(), JwksError> {
        let auth = Auth::from_jwks(&jwks.to_string(), compute_id)?;
        self.set(auth);
        Ok(())
    }
}

/// The middleware on protected routes; lets everything through while the
/// slot is empty.
pub async fn require<E: Env>(
    State(state): State<AppState<E>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.get() else {
        return next.run(req).await;
    };
    match auth.authorize(req.headers(), state.compute.env.wall_clock()) {
        Ok(grant) => {
            tracing::debug!(?grant, "authorized");
            next.run(req).await
        }
        Err(denied) => {
            // The reason never contains the token itself.
            tracing::warn!(status = denied.status.as_u16(), reason = %denied.reason, "request refused by auth");
            let mut resp = ApiError::new(denied.status, denied.reason).into_response();
            if denied.status != StatusCode::FORBIDDEN {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}
