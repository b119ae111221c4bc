//! Signed tokens: JWTs carrying user, tenant and role. Checked with an identity provider's keys
//! (RS256, ES256, EdDSA and the like through its JWKS: `crate::jwks`), an Ed25519 public key, or,
//! for development, HS256 (a shared secret). The issuer and audience are checked when configured,
//! with a leeway for clocks that disagree; which claims give the user, the tenant and the role is
//! configured too ([`ClaimMap`]), since each provider puts them somewhere else.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::jwks::Jwks;

/// Seconds a token's `exp` and `nbf` may be off by (clocks disagree), unless configured.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;

/// Where a token's claims put the user, the tenant and the role. Each is a claim's name (which may
/// hold `/` or `:`, as namespaced claims do: `https://moat.example/role`) or, starting with `/`, a
/// JSON pointer into the claims (`/realm_access/roles`, `/app_metadata/tenant`). An array gives its
/// first string (Keycloak's and Cognito's role lists).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMap {
    /// The user id's claim (`sub`).
    pub user: String,
    /// The tenant's claim (`tenant`; e.g. `org_id` for Auth0 or Clerk organisations).
    pub tenant: String,
    /// The role's claim (`role`).
    pub role: String,
    /// The tenant of a token without the tenant claim (a deployment with one company).
    pub default_tenant: Option<String>,
    /// The role of a token without the role claim.
    pub default_role: Option<String>,
}

impl Default for ClaimMap {
    fn default() -> Self {
        ClaimMap {
            user: "sub".into(),
            tenant: "tenant".into(),
            role: "role".into(),
            default_tenant: None,
            default_role: None,
        }
    }
}

impl ClaimMap {
    fn pick(claims: &Value, path: &str) -> Option<String> {
        let v = if path.starts_with('/') { claims.pointer(path) } else { claims.get(path) }?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.iter().find_map(|v| v.as_str().map(str::to_owned)),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The identity in `claims`, or what is missing.
    fn map(&self, claims: &Value) -> Result<Claims> {
        let missing =
            |what: &str, path: &str| Error::Unauthorized(format!("the token has no {what} (claim {path})"));
        let user = Self::pick(claims, &self.user).ok_or_else(|| missing("user", &self.user))?;
        let tenant = Self::pick(claims, &self.tenant)
            .or_else(|| self.default_tenant.clone())
            .ok_or_else(|| missing("tenant", &self.tenant))?;
        let role = Self::pick(claims, &self.role)
            .or_else(|| self.default_role.clone())
            .ok_or_else(|| missing("role", &self.role))?;
        let number = |k: &str| claims.get(k).and_then(Value::as_u64).unwrap_or(0);
        Ok(Claims {
            sub: user.into(),
            tenant: tenant.into(),
            role: role.into(),
            exp: number("exp"),
            iat: number("iat"),
        })
    }
}

/// What a token says about its bearer. Its texts are shared: a session holds the copies its
/// tenant's device registry keeps for every device (`Backend::seen`), not its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Arc<str>,
    /// The tenant (company) the user belongs to.
    pub tenant: Arc<str>,
    /// The user's role within the tenant.
    pub role: Arc<str>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: u64,
}

/// Checks (and, with a signing key, mints) tokens.
pub struct Auth {
    hs256: Option<(EncodingKey, DecodingKey)>,
    ed25519: Option<DecodingKey>,
    ed25519_signing: Option<EncodingKey>,
    jwks: Option<Arc<Jwks>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    claims: ClaimMap,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("hs256", &self.hs256.is_some())
            .field("ed25519", &self.ed25519.is_some())
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// An authenticator that accepts HS256 tokens signed with `secret` (at least 16 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Auth> {
        if secret.len() < 16 {
            return Err(Error::Config("the HS256 secret must be at least 16 bytes".into()));
        }
        let mut auth = Auth::none();
        auth.hs256 = Some((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret)));
        Ok(auth)
    }

    /// An authenticator with no key yet; add keys with the `with_*` methods.
    pub fn none() -> Auth {
        Auth {
            hs256: None,
            ed25519: None,
            ed25519_signing: None,
            jwks: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY_SECS,
            claims: ClaimMap::default(),
        }
    }

    /// Also accepts tokens signed by the keys of this key set (by their `kid`).
    pub fn with_jwks(mut self, jwks: Arc<Jwks>) -> Auth {
        self.jwks = Some(jwks);
        self
    }

    /// Requires this `iss` and/or this `aud` (one of the token's audiences), and takes `exp` and
    /// `nbf` with `leeway_secs` of slack.
    pub fn with_checks(mut self, issuer: Option<String>, audience: Option<String>, leeway_secs: u64) -> Auth {
        (self.issuer, self.audience, self.leeway) = (issuer, audience, leeway_secs);
        self
    }

    /// Reads the user, the tenant and the role from these claims.
    pub fn with_claims(mut self, claims: ClaimMap) -> Auth {
        self.claims = claims;
        self
    }

    /// Also accepts EdDSA tokens verified with this Ed25519 public key (PEM, SPKI).
    pub fn with_ed25519_public_pem(mut self, pem: &[u8]) -> Result<Auth> {
        self.ed25519 = Some(
            DecodingKey::from_ed_pem(pem).map_err(|e| Error::Config(format!("Ed25519 public key: {e}")))?,
        );
        Ok(self)
    }

    /// Signs EdDSA tokens with this Ed25519 private key (PEM, PKCS#8); for `moat token` and tests.
    pub fn with_ed25519_private_pem(mut self, pem: &[u8]) -> Result<Auth> {
        self.ed25519_signing = Some(
            EncodingKey::from_ed_pem(pem).map_err(|e| Error::Config(format!("Ed25519 private key: {e}")))?,
        );
        Ok(self)
    }

    /// True when no key is configured (every token would be refused).
    pub fn is_empty(&self) -> bool {
        self.hs256.is_none() && self.ed25519.is_none() && self.jwks.is_none()
    }

    /// Checks the signature, the expiry and the configured issuer and audience; returns the
    /// identity the configured claims give. A token naming a key id (`kid`) is checked with that
    /// key of the key set (read again if it is new); one without, with the configured Ed25519 or
    /// HS256 key for its algorithm.
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Unauthorized(format!("malformed token: {e}")))?;
        let from_set;
        let key = match (&header.kid, &self.jwks, header.alg) {
            (Some(kid), Some(jwks), alg) => {
                // Boxed: the key set's fetch is a large future, and most tokens need none.
                from_set = Box::pin(jwks.key(kid)).await?;
                if from_set.alg != alg {
                    return Err(Error::Unauthorized(format!(
                        "key {kid} is for {:?}, the token says {alg:?}",
                        from_set.alg
                    )));
                }
                &from_set.key
            }
            (_, _, Algorithm::HS256) => {
                self.hs256.as_ref().map(|(_, d)| d).ok_or_else(|| no_key(header.alg))?
            }
            (_, _, Algorithm::EdDSA) => self.ed25519.as_ref().ok_or_else(|| no_key(header.alg))?,
            (_, _, other) => return Err(Error::Unauthorized(format!("algorithm {other:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Value>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Error::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".to_owned(),
                ErrorKind::ImmatureSignature => "token not valid yet".to_owned(),
                ErrorKind::InvalidSignature => "bad signature".to_owned(),
                ErrorKind::InvalidIssuer => "token from another issuer".to_owned(),
                ErrorKind::InvalidAudience => "token for another audience".to_owned(),
                _ => format!("invalid token: {e}"),
            })
        })?;
        self.claims.map(&data.claims)
    }

    /// Mints a token for `claims`: EdDSA when a private key is set, else HS256.
    pub fn mint(&self, claims: &Claims) -> Result<String> {
        let (alg, key) = match (&self.ed25519_signing, &self.hs256) {
            (Some(k), _) => (Algorithm::EdDSA, k),
            (None, Some((k, _))) => (Algorithm::HS256, k),
            (None, None) => return Err(Error::Config("no signing key configured".into())),
        };
        jsonwebtoken::encode(&Header::new(alg), claims, key)
            .map_err(|e| Error::Config(format!("signing: {e}")))
    }
}

fn no_key(alg: Algorithm) -> Error {
    Error::Unauthorized(format!("no key for algorithm {alg:?}"))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> Claims {
        let now = now_secs();
        Claims {
            sub: "alice".into(),
            tenant: "company-a".into(),
            role: "admin".into(),
            exp: (now as i64 + exp_in) as u64,
            iat: now,
        }
    }

    #[tokio::test]
    async fn hs256_round_trip_and_refusals() {
        let auth = Auth::hs256(b"0123456789abcdef0123").unwrap();
        let token = auth.mint(&claims(60)).unwrap();
        assert_eq!(auth.verify(&token).await.unwrap(), claims(60));

        let other = Auth::hs256(b"another secret of enough length").unwrap();
        assert!(other.verify(&token).await.unwrap_err().to_string().contains("bad signature"));
        let expired = auth.mint(&claims(-120)).unwrap();
        assert!(auth.verify(&expired).await.unwrap_err().to_string().contains("expired"));
        assert!(auth.verify("not.a.token").await.is_err());
        let mut tampered = token.clone();
        tampered.replace_range(token.len() - 3.., "abc");
        assert!(auth.verify(&tampered).await.is_err());
        assert!(Auth::hs256(b"short").is_err());
    }

    #[tokio::test]
    async fn eddsa_tokens_verify_with_the_public_key_only() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys/");
        let private = std::fs::read(format!("{keys}ed25519-test-private.pem")).unwrap();
        let public = std::fs::read(format!("{keys}ed25519-test-public.pem")).unwrap();
        let signer = Auth::none().with_ed25519_private_pem(&private).unwrap();
        let token = signer.mint(&claims(60)).unwrap();
        assert!(token.starts_with("eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9") || token.contains('.'));

        let verifier =
            Auth::hs256(b"0123456789abcdef0123").unwrap().with_ed25519_public_pem(&public).unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub.as_ref(), "alice");
        let hs_only = Auth::hs256(b"0123456789abcdef0123").unwrap();
        assert!(hs_only.verify(&token).await.unwrap_err().to_string().contains("no key for algorithm"));
        // An HS256 token signed with the public key's bytes (the classic confusion attack) is refused.
        let confused = Auth::hs256(&public).unwrap().mint(&claims(60)).unwrap();
        assert!(verifier.verify(&confused).await.is_err());
    }

    #[tokio::test]
    async fn claims_come_from_where_the_provider_puts_them() {
        let auth = Auth::hs256(b"0123456789abcdef0123").unwrap();
        let key = EncodingKey::from_secret(b"0123456789abcdef0123");
        let sign = |v: Value| jsonwebtoken::encode(&Header::new(Algorithm::HS256), &v, &key).unwrap();
        let exp = now_secs() + 60;
        // Keycloak-like: roles in a nested list, the organisation in a namespaced claim.
        let token = sign(serde_json::json!({"sub": "u-1", "exp": exp,
            "https://moat.example/org": "company-a", "realm_access": {"roles": ["technician", "offline"]}}));
        let mapped = auth.with_claims(ClaimMap {
            tenant: "https://moat.example/org".into(),
            role: "/realm_access/roles".into(),
            ..ClaimMap::default()
        });
        let c = mapped.verify(&token).await.unwrap();
        assert_eq!((c.sub.as_ref(), c.tenant.as_ref(), c.role.as_ref()), ("u-1", "company-a", "technician"));
        let no_role =
            sign(serde_json::json!({"sub": "u-1", "exp": exp, "https://moat.example/org": "company-a"}));
        let e = mapped.verify(&no_role).await.unwrap_err().to_string();
        assert!(e.contains("no role (claim /realm_access/roles)"), "{e}");
        let defaulted = mapped.with_claims(ClaimMap {
            default_role: Some("viewer".into()),
            default_tenant: Some("solo".into()),
            ..ClaimMap::default()
        });
        let bare = sign(serde_json::json!({"sub": "u-2", "exp": exp}));
        let c = defaulted.verify(&bare).await.unwrap();
        assert_eq!((c.tenant.as_ref(), c.role.as_ref()), ("solo", "viewer"));
    }

    #[tokio::test]
    async fn issuer_audience_and_leeway() {
        let key = EncodingKey::from_secret(b"0123456789abcdef0123");
        let sign = |v: Value| jsonwebtoken::encode(&Header::new(Algorithm::HS256), &v, &key).unwrap();
        let now = now_secs();
        let auth = Auth::hs256(b"0123456789abcdef0123").unwrap().with_checks(
            Some("https://idp.example/".into()),
            Some("moat".into()),
            30,
        );
        let good = serde_json::json!({"sub": "u", "tenant": "t", "role": "r", "exp": now + 60,
            "iss": "https://idp.example/", "aud": ["other", "moat"]});
        assert!(auth.verify(&sign(good.clone())).await.is_ok());
        let mut v = good.clone();
        v["iss"] = "https://evil.example/".into();
        assert!(auth.verify(&sign(v)).await.unwrap_err().to_string().contains("another issuer"));
        let mut v = good.clone();
        v["aud"] = "someone-else".into();
        assert!(auth.verify(&sign(v)).await.unwrap_err().to_string().contains("another audience"));
        // Expired 20 s ago: inside the 30 s leeway; 40 s ago: outside it.
        let mut v = good.clone();
        v["exp"] = (now - 20).into();
        assert!(auth.verify(&sign(v)).await.is_ok());
        let mut v = good.clone();
        v["exp"] = (now - 40).into();
        assert!(auth.verify(&sign(v)).await.unwrap_err().to_string().contains("expired"));
        let mut v = good;
        v["nbf"] = (now + 600).into();
        assert!(auth.verify(&sign(v)).await.unwrap_err().to_string().contains("not valid yet"));
    }
}
