//! TLS in the binary: the real `moat serve` with a certificate made here by a CA made here; a
//! client that trusts that CA syncs over `wss://`; `SIGHUP` swaps the certificate for new handshakes
//! while open connections carry on; a client that never handshakes holds up no one.

mod support;

use std::io::BufRead;
use std::sync::Arc;

use futures_util::SinkExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::json;
use support::{Client, token};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream};

/// A CA, and a certificate for 127.0.0.1 it signs (PEM chain and key).
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn leaf(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn client(&self) -> Connector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.0.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Connector::Rustls(Arc::new(config))
    }
}

async fn wss(url: &str, ca: &Ca) -> Result<support::Ws, tokio_tungstenite::tungstenite::Error> {
    tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(ca.client()))
        .await
        .map(|(ws, _)| ws)
}

/// The certificate the server presented on this connection.
fn presented(ws: &support::Ws) -> Vec<u8> {
    let MaybeTlsStream::Rustls(tls) = ws.get_ref() else { panic!("not TLS") };
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sync_over_tls_and_a_sighup_swaps_the_certificate_for_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (ca, ca2) = (Ca::new("Moat test CA"), Ca::new("Moat test CA, renewed"));
    let (chain, private) = ca.leaf();
    std::fs::write(&cert, &chain).unwrap();
    std::fs::write(&key, &private).unwrap();

    support::moat(&["tenant", "create", "company-a"], &data);
    let mut server = support::Moat::serve(
        &data,
        &["--tls-listen", "127.0.0.1:0"],
        &[("MOAT_TLS_CERT", cert.as_path()), ("MOAT_TLS_KEY", key.as_path())],
    );
    let mut tls_line = String::new();
    server.out.read_line(&mut tls_line).unwrap();
    let tls_addr = tls_line.split("https://").nth(1).and_then(|s| s.split('/').next()).unwrap().to_owned();
    let url = format!("wss://{tls_addr}/sync");
    let tok = token("alice", "company-a", "admin");

    // A client that opens TCP and says nothing does not stop the others' handshakes.
    let _silent = tokio::net::TcpStream::connect(&tls_addr).await.unwrap();

    let ws = wss(&url, &ca).await.expect("a client trusting the CA connects");
    let first_cert = presented(&ws);
    let mut alice = Client::over(ws, &tok, json!({})).await;
    alice.until("synced").await;
    // A client that does not trust the CA is refused at the handshake.
    assert!(wss(&url, &ca2).await.is_err(), "an unknown CA is refused");

    // Renewal: a new key and certificate from another CA, then SIGHUP.
    let (chain2, private2) = ca2.leaf();
    std::fs::write(&cert, &chain2).unwrap();
    std::fs::write(&key, &private2).unwrap();
    server.signal(libc::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ws2 = loop {
        if let Ok(ws) = wss(&url, &ca2).await {
            break ws;
        }
        assert!(std::time::Instant::now() < deadline, "the new certificate is served after SIGHUP");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_ne!(presented(&ws2), first_cert);
    assert!(wss(&url, &ca).await.is_err(), "the old CA's certificate is no longer presented");

    // The connection made before the reload carries on: a write over it is acked and reaches the
    // connection made after.
    let mut bob = Client::over(ws2, &tok, json!({})).await;
    bob.until("synced").await;
    let insert = json!({"changes": [{"table": "jobs", "op": "insert", "pk": {"id": "job-tls"},
        "cols": {"tenant_id": {"new": "company-a"}, "title": {"new": "Over TLS"}, "status": {"new": "open"},
                 "price_cents": {"new": 1}, "notes": {"new": null}, "internal_notes": {"new": null},
                 "line_items": {"new": "[]"}, "assignee": {"new": null}, "customer_id": {"new": null},
                 "scheduled_date": {"new": null}}}]});
    alice.push("m-tls", insert).await;
    let (ack, _) = alice.until("ack").await;
    assert_eq!(ack["mutation_id"], "m-tls");
    let (diff, _) = bob.until("diff").await;
    assert!(diff.to_string().contains("Over TLS"));

    // A bad file on SIGHUP keeps the old certificate.
    std::fs::write(&key, "not a key").unwrap();
    server.signal(libc::SIGHUP);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(wss(&url, &ca2).await.is_ok(), "a failed reload leaves the served certificate alone");

    alice.ws.send(Message::Close(None)).await.unwrap();
    server.signal(libc::SIGTERM);
    assert_eq!(bob.closed().await.0, 1001, "TLS sessions get the shutdown's 1001 too");
    server.stop();
}
