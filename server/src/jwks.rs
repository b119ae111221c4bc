//! An identity provider's public keys as a JWKS (JSON Web Key Set): fetched from a URL (Auth0,
//! Clerk, Supabase, Firebase Auth, Cognito and Keycloak all publish one) or read from a file, kept
//! in memory, and read again when a token names a key id not in it (the provider rotated its keys)
//! or when the set is older than its refresh interval. No restart is needed for a rotation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::{Error, Result};

/// A set is read again after this long even when every key id is known.
const REFRESH: Duration = Duration::from_secs(3600);
/// An unknown key id reads the set again at most this often (a stream of tokens with made-up key
/// ids must not become a stream of requests to the provider).
const UNKNOWN_KID_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The most a key set may weigh.
const MAX_BYTES: usize = 1 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `http://` or `https://` (the platform's trust store checks the certificate).
    Url(String),
    /// A file with the set, read again like a URL would be fetched.
    File(PathBuf),
}

/// One usable key: its algorithm and its decoding key.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

struct Cached {
    keys: HashMap<String, Key>,
    read_at: Option<Instant>,
    /// The last read an unknown key id caused.
    unknown_read_at: Option<Instant>,
}

/// The keys, cached.
pub struct Jwks {
    source: Source,
    cache: RwLock<Cached>,
    /// One read at a time.
    reading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cache.read().map(|c| c.keys.len()).unwrap_or(0);
        f.debug_struct("Jwks").field("source", &self.source).field("keys", &n).finish()
    }
}

impl Jwks {
    /// Keys from `source`, not read yet (the first token, or [`Jwks::refresh`], reads them).
    pub fn new(source: Source) -> Arc<Jwks> {
        Arc::new(Jwks {
            source,
            cache: RwLock::new(Cached { keys: HashMap::new(), read_at: None, unknown_read_at: None }),
            reading: tokio::sync::Mutex::new(()),
        })
    }

    /// The key with this id: from the cache, or after reading the set again when the id is unknown
    /// (at most every few seconds) or the set is old.
    pub(crate) async fn key(&self, kid: &str) -> Result<Key> {
        let (found, stale, may_read) = {
            let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
            let found = c.keys.get(kid).cloned();
            let stale = c.read_at.is_none_or(|t| t.elapsed() > REFRESH);
            let may_read =
                found.is_none() && c.unknown_read_at.is_none_or(|t| t.elapsed() > UNKNOWN_KID_MIN_INTERVAL);
            if may_read {
                c.unknown_read_at = Some(Instant::now());
            }
            (found, stale, may_read)
        };
        if let Some(key) = found
            && !stale
        {
            return Ok(key);
        }
        if (stale || may_read)
            && let Err(e) = self.refresh().await
        {
            tracing::warn!("identity provider keys: {e}");
        }
        let c = self.cache.read().unwrap_or_else(|e| e.into_inner());
        c.keys.get(kid).cloned().ok_or_else(|| Error::Unauthorized(format!("unknown key id {kid}")))
    }

    /// Reads the set now and replaces the cached keys (keys it no longer lists are forgotten).
    pub async fn refresh(&self) -> Result<usize> {
        let _one = self.reading.lock().await;
        let result = async {
            let bytes = match &self.source {
                Source::Url(url) => tokio::time::timeout(FETCH_TIMEOUT, get(url))
                    .await
                    .map_err(|_| Error::Unavailable(format!("{url}: no answer in time")))??,
                Source::File(p) => {
                    std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))?
                }
            };
            parse(&bytes)
        }
        .await;
        let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
        // A failed read is not retried at once either.
        c.read_at = Some(Instant::now());
        let keys = result?;
        let n = keys.len();
        c.keys = keys;
        Ok(n)
    }
}

/// The usable keys of a set, by key id. Keys without an id, or of a kind this server does not
/// take (symmetric keys above all: a provider's set never holds secrets), are skipped.
fn parse(bytes: &[u8]) -> Result<HashMap<String, Key>> {
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| Error::Unavailable(format!("not a key set: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else { continue };
        // A declared algorithm (`"alg": "RS256"`), by its name (encryption algorithms do not parse).
        let declared = jwk
            .common
            .key_algorithm
            .and_then(|a| serde_json::to_value(a).ok()?.as_str()?.parse::<Algorithm>().ok());
        let alg = match (&jwk.algorithm, declared) {
            (AlgorithmParameters::OctetKey(_), _) => continue,
            (_, Some(a)) => a,
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None) => match p.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => continue,
            },
            (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
        };
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            continue;
        }
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid.clone(), Key { alg, key });
            }
            Err(e) => tracing::warn!(kid, "identity provider key skipped: {e}"),
        }
    }
    Ok(keys)
}

/// One HTTP/1.1 GET (`http://` or `https://`); the body, if the status is 200.
async fn get(url: &str) -> Result<Vec<u8>> {
    use http_body_util::BodyExt;
    let bad = |m: &dyn std::fmt::Display| Error::Unavailable(format!("{url}: {m}"));
    let (secure, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return Err(Error::Config(format!("{url}: expected an http:// or https:// address"))),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|e| bad(&format!("port: {e}")))?)
        }
        _ => (authority, if secure { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| bad(&e))?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::USER_AGENT, concat!("moat/", env!("CARGO_PKG_VERSION")))
        .header(hyper::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::<hyper::body::Bytes>::new())
        .map_err(|e| bad(&e))?;
    let response = if secure {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| bad(&e))?;
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config().map_err(|e| bad(&e))?);
        let tls = connector.connect(name, tcp).await.map_err(|e| bad(&e))?;
        send(hyper_util::rt::TokioIo::new(tls), request).await
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), request).await
    }
    .map_err(|e| bad(&e))?;
    if response.status() != hyper::StatusCode::OK {
        return Err(bad(&format!("HTTP {}", response.status())));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_BYTES);
    Ok(body.collect().await.map_err(|e| bad(&e))?.to_bytes().to_vec())
}

async fn send<I>(
    io: I,
    request: hyper::Request<http_body_util::Empty<hyper::body::Bytes>>,
) -> std::result::Result<hyper::Response<hyper::body::Incoming>, hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_keeps_its_asymmetric_keys_by_id() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let signing = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
        let mut ec = jsonwebtoken::jwk::Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
        ec.common.key_id = Some("ec-1".into());
        let hmac = jsonwebtoken::EncodingKey::from_secret(b"a secret that must never be a key");
        let mut oct = jsonwebtoken::jwk::Jwk::from_encoding_key(&hmac, Algorithm::HS256).unwrap();
        oct.common.key_id = Some("oct-1".into());
        let mut no_id = ec.clone();
        no_id.common.key_id = None;
        // An Ed25519 key as providers publish it (OKP), with no declared algorithm.
        let okp: jsonwebtoken::jwk::Jwk = serde_json::from_value(serde_json::json!({"kty": "OKP",
            "crv": "Ed25519", "kid": "ed-1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
        .unwrap();
        let set = serde_json::to_vec(&JwkSet { keys: vec![ec, oct, no_id, okp] }).unwrap();
        let parsed = parse(&set).unwrap();
        let mut ids = parsed.keys().collect::<Vec<_>>();
        ids.sort();
        assert_eq!(ids, ["ec-1", "ed-1"]);
        assert_eq!((parsed["ec-1"].alg, parsed["ed-1"].alg), (Algorithm::ES256, Algorithm::EdDSA));
        assert!(parse(b"{\"keys\": 3}").is_err());
    }
}
