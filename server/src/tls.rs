//! TLS in the binary (rustls): a certificate and key from PEM files, reloaded in place (`SIGHUP`,
//! [`Certificates::reload`]) without touching open connections, and a listener that completes each
//! handshake on its own task, so a slow or silent client never holds up the others' accepts.
//!
//! Also the socket settings every accepted connection gets, TLS or not ([`tune`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::error::{Error, Result};

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Unsent bytes a socket may hold in the kernel before the server stops writing to it
/// (`TCP_NOTSENT_LOWAT`): what a client that stops reading can pin in the server's kernel memory,
/// about, instead of the megabytes of an autotuned send buffer. Bytes in flight (sent, not yet
/// acknowledged) are not limited by it, so a healthy client's throughput is not either.
pub const NOTSENT_LOWAT: u32 = 64 * 1024;

/// The settings of every accepted socket: no Nagle delay (frames are small and latency matters),
/// and a bound on unsent bytes ([`NOTSENT_LOWAT`]).
pub fn tune(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {e}");
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = NOTSENT_LOWAT as libc::c_int;
        // SAFETY: setsockopt on a socket this process owns, with a c_int of the size given.
        let r = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            tracing::debug!("TCP_NOTSENT_LOWAT: {}", std::io::Error::last_os_error());
        }
    }
}

/// The server's certificate chain and key, as files, and the configuration made from them.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Certificates {
    /// Loads the chain (`cert`, PEM, leaf first) and its private key (`key`, PEM: PKCS#8, PKCS#1 or
    /// SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Certificates>> {
        let acceptor = acceptor(cert, key)?;
        Ok(Arc::new(Certificates { cert: cert.into(), key: key.into(), current: RwLock::new(acceptor) }))
    }

    /// Reads the files again. New handshakes use the new certificate; open connections keep theirs.
    /// On an error (a half-written file, a key that does not match) the old certificate stays.
    pub fn reload(&self) -> Result<()> {
        let acceptor = acceptor(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let bad = |p: &Path, e: &dyn std::fmt::Display| Error::Config(format!("TLS: {}: {e}", p.display()));
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| bad(key, &e))?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener whose connections are TLS: TCP accepts here, handshakes on tasks of their own
/// (10 s at most), finished streams handed to the HTTP server in order of
/// completion.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `certs`.
    pub fn new(listener: TcpListener, certs: Arc<Certificates>) -> Result<TlsListener> {
        let local = listener.local_addr().map_err(|e| Error::Listen(e.to_string()))?;
        let (tx, ready) = mpsc::channel(1024);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as the HTTP server does.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tune(&tcp);
                let (acceptor, tx) = (certs.acceptor(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake: no handshake in time"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready, accepting })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task is gone only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The TLS client configuration for the server's own requests (an identity provider's keys):
/// rustls with the platform's verifier (the system trust store). Made once.
pub(crate) fn client_config() -> std::result::Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(Arc::clone(c));
    }
    use rustls_platform_verifier::BuilderVerifierExt;
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth();
    Ok(Arc::clone(CONFIG.get_or_init(|| Arc::new(config))))
}
