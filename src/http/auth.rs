//! JWT bearer authentication of the mutating routes and `/dbs_and_roles`.
//!
//! Keys come from a JSON Web Key Set (`--jwks`): Ed25519 (`kty: OKP`,
//! algorithm EdDSA) and RSA (RS256, or the RSA algorithm the key names).
//! The rules are Neon's (`compute_tools/src/http/middleware/authorize.rs`):
//! a token is accepted when it is signed by one of the keys, is not expired
//! (`exp`, 60 s leeway; a token without `exp` is accepted, as Neon's
//! control plane and neon_local send none), and either
//! - has `scope` `compute_ctl:admin`; then its `aud` must contain `compute`
//!   (else 401, as Neon), and any `compute_id` is not looked at; or
//! - has no scope and a `compute_id` claim equal to this compute's
//!   `--compute-id` (else 403).
//!
//! [`TokenRules::require_exp`] (`--require-token-exp`) is stricter: `exp`
//! is required and `nbf` is checked.
//!
//! The key set can change at run time ([`AuthSlot`]): `--jwks` at start,
//! then the one a control plane sends as `compute_ctl_config.jwks` in its
//! spec response or in `POST /configure` (as Neon's control plane does). A
//! compute started without keys turns auth on when it receives some.
//!
//! Status codes, as Neon's: **400** when there is no `Authorization: Bearer`
//! header. **401** when the token does not verify: not a JWT, not signed
//! by a configured key, expired, an unknown scope, or an admin token whose
//! `aud` lacks `compute`. **403** when a genuine token without admin scope
//! has no `compute_id` or another compute's. Times are read from the Env
//! clock, so the simulator controls expiry. Tokens are never logged.

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
use super::verified_tokens::VerifiedTokens;
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

/// How strict the token checks are beyond Neon's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenRules {
    /// Refuse tokens without `exp`, and check `nbf` (`--require-token-exp`).
    pub require_exp: bool,
}

/// The configured verifier.
pub struct Auth {
    keys: Vec<VerifyKey>,
    compute_id: Option<String>,
    rules: TokenRules,
    /// Tokens these keys verified before (see [`VerifiedTokens`]).
    verified: VerifiedTokens<Claims>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("compute_id", &self.compute_id)
            .field("rules", &self.rules)
            .field("verified", &self.verified.len())
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

/// Who the caller is, once accepted. Either may call every protected route
/// (as in Neon, where no route asks for more than an accepted token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    Compute,
}

/// `aud` is a string or an array of strings (Neon sends an array; RFC 7519
/// allows both).
#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    exp: Option<u64>,
    nbf: Option<u64>,
    aud: Option<Audience>,
    /// Neon's `ComputeClaimsScope`: only `compute_ctl:admin` exists.
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
        Ok(Self {
            keys,
            compute_id,
            rules: TokenRules::default(),
            verified: VerifiedTokens::default(),
        })
    }

    /// The same verifier with `rules`.
    pub fn with_rules(mut self, rules: TokenRules) -> Self {
        self.rules = rules;
        self
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
        check_times(&claims, now, self.rules)?;
        self.grant(&claims)
    }

    /// The claims of `token` once its signature verifies against the
    /// configured keys: from the cache when these keys verified it before.
    fn verify(&self, token: &str) -> Result<Claims, Denied> {
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        let claims = self.verify_signature(token)?;
        self.verified.insert(token, &claims);
        Ok(claims)
    }

    /// Verifies the signature against the configured keys and decodes the claims.
    fn verify_signature(&self, token: &str) -> Result<Claims, Denied> {
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

    /// Neon's decision: an admin scope needs audience `compute` (401), any
    /// other token a matching `compute_id` (403).
    fn grant(&self, claims: &Claims) -> Result<Grant, Denied> {
        match claims.scope.as_deref() {
            Some(ADMIN_SCOPE) => {
                return match &claims.aud {
                    None => Err(Denied::unauthenticated(format!(
                        "the admin token has no aud claim; request a token for audience {AUDIENCE:?}"
                    ))),
                    Some(a) if !a.contains(AUDIENCE) => Err(Denied::unauthenticated(format!(
                        "the admin token's audience is not {AUDIENCE:?}; request a token for audience {AUDIENCE:?}"
                    ))),
                    Some(_) => Ok(Grant::Admin),
                };
            }
            Some(other) => {
                return Err(Denied::unauthenticated(format!(
                    "unknown scope {other:?} in the token; the only scope is {ADMIN_SCOPE:?}"
                )));
            }
            None => {}
        }
        match (&claims.compute_id, &self.compute_id) {
            (None, _) => Err(Denied::forbidden(format!(
                "the token has neither scope {ADMIN_SCOPE:?} nor a compute_id claim; use a token issued for this compute"
            ))),
            (Some(have), Some(want)) if have == want => Ok(Grant::Compute),
            (Some(_), Some(_)) => Err(Denied::forbidden(
                "the token's compute_id is not this compute's --compute-id; use a token issued for this compute",
            )),
            (Some(_), None) => Err(Denied::forbidden(
                "the token names a compute_id, but this compute was started without --compute-id; start it with -i/--compute-id or use an admin token",
            )),
        }
    }
}

/// `exp` when present (always), required and with `nbf` under `require_exp`.
fn check_times(claims: &Claims, now: SystemTime, rules: TokenRules) -> Result<(), Denied> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let leeway = LEEWAY.as_secs();
    match claims.exp {
        Some(exp) if exp.saturating_add(leeway) < now => {
            return Err(Denied::unauthenticated(format!(
                "the token expired {} s ago; get a fresh one",
                now - exp
            )));
        }
        Some(_) => {}
        None if rules.require_exp => {
            return Err(Denied::unauthenticated(
                "the token has no exp claim, and this compute requires one (--require-token-exp); issue tokens that expire",
            ));
        }
        None => {}
    }
    if !rules.require_exp {
        return Ok(());
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

/// The verifier in effect; empty while auth is off. Cloning shares it. A
/// key set installed later keeps the slot's [`TokenRules`].
#[derive(Clone, Default)]
pub struct AuthSlot(Arc<RwLock<Option<Arc<Auth>>>>, TokenRules);

impl std::fmt::Debug for AuthSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AuthSlot").field(&self.get()).finish()
    }
}

impl AuthSlot {
    pub fn new(auth: Option<Auth>) -> Self {
        let rules = auth.as_ref().map(|a| a.rules).unwrap_or_default();
        Self::with_rules(auth, rules)
    }

    /// A slot whose later key sets are checked with `rules`.
    pub fn with_rules(auth: Option<Auth>, rules: TokenRules) -> Self {
        Self(Arc::new(RwLock::new(auth.map(Arc::new))), rules)
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
        let auth = Auth::from_jwks(&jwks.to_string(), compute_id)?.with_rules(self.1);
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
    match auth.authorize(req.headers(), state.compute.env().wall_clock()) {
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
