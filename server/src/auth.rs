//! Signed tokens: JWTs carrying user, tenant and role, checked with HS256 (a shared secret) and/or
//! EdDSA (an Ed25519 public key), so a separate identity service can sign without sharing a secret.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The tenant (company) the user belongs to.
    pub tenant: String,
    /// The user's role within the tenant.
    pub role: String,
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
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("hs256", &self.hs256.is_some())
            .field("ed25519", &self.ed25519.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// An authenticator that accepts HS256 tokens signed with `secret` (at least 16 bytes).
    pub fn hs256(secret: &[u8]) -> Result<Auth> {
        if secret.len() < 16 {
            return Err(Error::Config("the HS256 secret must be at least 16 bytes".into()));
        }
        Ok(Auth {
            hs256: Some((EncodingKey::from_secret(secret), DecodingKey::from_secret(secret))),
            ed25519: None,
            ed25519_signing: None,
        })
    }

    /// An authenticator with no key yet; add keys with the `with_*` methods.
    pub fn none() -> Auth {
        Auth { hs256: None, ed25519: None, ed25519_signing: None }
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
        self.hs256.is_none() && self.ed25519.is_none()
    }

    /// Checks the signature and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Error::Unauthorized(format!("malformed token: {e}")))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref().map(|(_, d)| d),
            Algorithm::EdDSA => self.ed25519.as_ref(),
            other => return Err(Error::Unauthorized(format!("algorithm {other:?} is not accepted"))),
        }
        .ok_or_else(|| Error::Unauthorized(format!("no key for algorithm {:?}", header.alg)))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            Error::Unauthorized(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "token expired".to_owned(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "bad signature".to_owned(),
                _ => format!("invalid token: {e}"),
            })
        })?;
        Ok(data.claims)
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

    #[test]
    fn hs256_round_trip_and_refusals() {
        let auth = Auth::hs256(b"0123456789abcdef0123").unwrap();
        let token = auth.mint(&claims(60)).unwrap();
        assert_eq!(auth.verify(&token).unwrap(), claims(60));

        let other = Auth::hs256(b"another secret of enough length").unwrap();
        assert!(other.verify(&token).unwrap_err().to_string().contains("bad signature"));
        let expired = auth.mint(&claims(-60)).unwrap();
        assert!(auth.verify(&expired).unwrap_err().to_string().contains("expired"));
        assert!(auth.verify("not.a.token").is_err());
        let mut tampered = token.clone();
        tampered.replace_range(token.len() - 3.., "abc");
        assert!(auth.verify(&tampered).is_err());
        assert!(Auth::hs256(b"short").is_err());
    }

    #[test]
    fn eddsa_tokens_verify_with_the_public_key_only() {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/keys/");
        let private = std::fs::read(format!("{keys}ed25519-test-private.pem")).unwrap();
        let public = std::fs::read(format!("{keys}ed25519-test-public.pem")).unwrap();
        let signer = Auth::none().with_ed25519_private_pem(&private).unwrap();
        let token = signer.mint(&claims(60)).unwrap();
        assert!(token.starts_with("eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSJ9") || token.contains('.'));

        let verifier =
            Auth::hs256(b"0123456789abcdef0123").unwrap().with_ed25519_public_pem(&public).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "alice");
        let hs_only = Auth::hs256(b"0123456789abcdef0123").unwrap();
        assert!(hs_only.verify(&token).unwrap_err().to_string().contains("no key for algorithm"));
        // An HS256 token signed with the public key's bytes (the classic confusion attack) is refused.
        let confused = Auth::hs256(&public).unwrap().mint(&claims(60)).unwrap();
        assert!(verifier.verify(&confused).is_err());
    }
}
