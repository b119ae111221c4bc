//! Identity providers: tokens signed with RS256 and ES256 keys published as a JWKS by a key server
//! on 127.0.0.1, checked for issuer and audience, with the user, tenant and role read from the
//! claims the configuration names. A key rotation at the provider is followed without a restart;
//! made-up key ids cannot make the server hammer the provider.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::SinkExt;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Client, TestServer, closed, raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "moat-api";

/// A key server: answers every GET with the current set, and counts the requests.
struct KeyServer {
    url: String,
    set: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

/// Reads one request and answers it with the current set.
async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut tcp: S,
    s: Arc<Mutex<String>>,
    f: Arc<AtomicUsize>,
) {
    let mut buf = vec![0; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"GET /.well-known/jwks.json HTTP/1.1\r\n"));
    f.fetch_add(1, Ordering::SeqCst);
    let body = s.lock().unwrap().clone();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(head.as_bytes()).await;
    let _ = tcp.write_all(body.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

impl KeyServer {
    async fn start() -> KeyServer {
        KeyServer::start_tls(None).await
    }

    /// With `tls`, the set is served over HTTPS with that acceptor's certificate.
    async fn start_tls(tls: Option<tokio_rustls::TlsAcceptor>) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        let set = Arc::new(Mutex::new(String::from("{\"keys\": []}")));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (Arc::clone(&set), Arc::clone(&fetches));
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (s, f, tls) = (Arc::clone(&s), Arc::clone(&f), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, s, f).await;
                            }
                        }
                        None => answer(tcp, s, f).await,
                    }
                });
            }
        });
        KeyServer { url, set, fetches }
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.set.lock().unwrap() = serde_json::to_string(&JwkSet { keys }).unwrap();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A signing key of the provider and its public half as a JWK.
struct ProviderKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl ProviderKey {
    fn rsa(kid: &'static str) -> ProviderKey {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/keys/rsa-test-private.pem"
        ))
        .unwrap();
        ProviderKey { kid, alg: Algorithm::RS256, key: EncodingKey::from_rsa_pem(&pem).unwrap() }
    }

    fn ec(kid: &'static str) -> ProviderKey {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        ProviderKey { kid, alg: Algorithm::ES256, key: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap() }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.into());
        jwk
    }

    /// A token as the provider issues it: the organisation and the roles under claims of its own.
    fn token(&self, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn claims(user: &str, org: &str, role: &str) -> Value {
    let now = moat_server::auth::now_secs();
    json!({"sub": user, "org_id": org, "https://moat.example/roles": [role], "iss": ISSUER,
           "aud": AUDIENCE, "iat": now, "exp": now + 600})
}

/// The close a hello with this token gets (the token is refused).
async fn refused(server: &TestServer, token: &str) -> (u16, String) {
    let mut ws = raw(&server.url()).await;
    let hello = json!({"type": "hello", "protocol": 1, "token": token, "client_id": "c", "cursors": {}});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    closed(&mut ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_tokens_are_checked_with_the_published_keys_and_a_rotation_needs_no_restart() {
    let idp = KeyServer::start().await;
    let rsa = ProviderKey::rsa("rsa-2026-11");
    idp.publish(vec![rsa.jwk()]);
    let url = idp.url.clone();
    let server = TestServer::start_with(move |c| {
        c.auth.jwks_url = Some(url);
        c.auth.issuer = Some(ISSUER.into());
        c.auth.audience = Some(AUDIENCE.into());
        c.auth.claims.tenant = "org_id".into();
        c.auth.claims.role = "https://moat.example/roles".into();
    })
    .await;

    // RS256, with the tenant and role from the provider's claims.
    let mut alice =
        Client::connect(&server.url(), &rsa.token(claims("auth0|alice", "company-a", "admin")), json!({}))
            .await;
    assert_eq!(
        (&alice.welcome["user"], &alice.welcome["tenant"], &alice.welcome["role"]),
        (&json!("auth0|alice"), &json!("company-a"), &json!("admin"))
    );
    alice.until("synced").await;

    // Issuer and audience are checked.
    let mut other_issuer = claims("mallory", "company-a", "admin");
    other_issuer["iss"] = "https://evil.test/".into();
    assert_eq!(
        refused(&server, &rsa.token(other_issuer)).await,
        (4001, "unauthorized: token from another issuer".into())
    );
    let mut other_audience = claims("mallory", "company-a", "admin");
    other_audience["aud"] = "another-api".into();
    assert_eq!(
        refused(&server, &rsa.token(other_audience)).await,
        (4001, "unauthorized: token for another audience".into())
    );
    // The published key's algorithm is the only one it verifies (no RS256 → HS256 confusion).
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(rsa.kid.into());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims("mallory", "company-a", "admin"),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert!(refused(&server, &confused).await.1.contains("is for RS256"));

    // The provider rotates to an ES256 key: the first token naming it makes the server read the set
    // again, with no restart.
    let fetched = idp.fetches();
    let ec = ProviderKey::ec("ec-2026-12");
    idp.publish(vec![ec.jwk()]);
    let mut tom =
        Client::connect(&server.url(), &ec.token(claims("auth0|tom", "company-a", "technician")), json!({}))
            .await;
    assert_eq!(tom.welcome["role"], "technician");
    tom.until("synced").await;
    assert_eq!(idp.fetches(), fetched + 1, "one read for the new key id");

    // The retired key no longer verifies, and made-up key ids do not each cost a request.
    let (code, reason) = refused(&server, &rsa.token(claims("auth0|alice", "company-a", "admin"))).await;
    assert_eq!((code, reason.as_str()), (4001, "unauthorized: unknown key id rsa-2026-11"));
    for i in 0..20 {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(format!("made-up-{i}"));
        let forged = jsonwebtoken::encode(&h, &claims("mallory", "company-a", "admin"), &ec.key).unwrap();
        assert_eq!(refused(&server, &forged).await.0, 4001);
    }
    assert_eq!(idp.fetches(), fetched + 1, "made-up key ids within the interval read nothing");
    // The session opened with the retired key carries on until its token expires.
    assert!(alice.settle().await.is_empty());
}

/// An acceptor for 127.0.0.1 with a certificate from a CA made here; the CA's PEM.
fn tls_for_127_0_0_1(ca_name: &str) -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let der_key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], der_key)
            .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

/// Providers publish their keys over HTTPS: the server fetches them with the platform's verifier
/// (here the trust store is `SSL_CERT_FILE`, holding a CA made here); a set served with a certificate
/// from a CA it does not trust is never read, so tokens signed with it are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_over_https_and_an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (trusted, ca_pem) = tls_for_127_0_0_1("Moat test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    // SAFETY: set before the server (and its first TLS client configuration) exists; no other test
    // of this binary reads the variable.
    unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };
    let idp = KeyServer::start_tls(Some(trusted)).await;
    let key = ProviderKey::ec("ec-https");
    idp.publish(vec![key.jwk()]);
    let (untrusted, _) = tls_for_127_0_0_1("Somebody else's CA");
    let rogue = KeyServer::start_tls(Some(untrusted)).await;
    let rogue_key = ProviderKey::ec("ec-rogue");
    rogue.publish(vec![rogue_key.jwk()]);

    let url = idp.url.clone();
    let server = TestServer::start_with(move |c| {
        c.auth.jwks_url = Some(url);
        c.auth.claims.tenant = "org_id".into();
        c.auth.claims.role = "https://moat.example/roles".into();
    })
    .await;
    let c =
        Client::connect(&server.url(), &key.token(claims("auth0|alice", "company-a", "admin")), json!({}))
            .await;
    assert_eq!(c.welcome["user"], "auth0|alice");
    assert!(idp.fetches() >= 1);

    let url = rogue.url.clone();
    let other = TestServer::start_with(move |c| {
        c.auth.jwks_url = Some(url);
        c.auth.claims.tenant = "org_id".into();
        c.auth.claims.role = "https://moat.example/roles".into();
    })
    .await;
    let (code, reason) = refused(&other, &rogue_key.token(claims("mallory", "company-a", "admin"))).await;
    assert_eq!((code, reason.as_str()), (4001, "unauthorized: unknown key id ec-rogue"));
    assert_eq!(rogue.fetches(), 0, "the TLS handshake failed before any request");
}
