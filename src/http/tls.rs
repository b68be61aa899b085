//! TLS with rustls: the certificate and key come from PEM files and are reloaded when the files
//! change. New handshakes get the new certificate; open connections keep theirs, so a reload
//! drops nothing. A file pair that does not load (half written, mismatched) keeps the old
//! certificate and is retried. ALPN offers HTTP/2 and HTTP/1.1.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::labels::Outcome;

pub use crate::settings::tls::TlsSettings;

/// Marks a connection whose client presented a certificate the client CA verified.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate;

/// Records, per connection, whether the client's certificate was verified (for
/// [`ClientCertificate`] checks on the admin API).
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
        if tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty())
        {
            ext.insert(ClientCertificate);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("server.tls: {path}: {message}")]
    File { path: String, message: String },
    #[error("server.tls: the key does not fit the certificate or is not usable: {0}")]
    Key(String),
}

/// Reads a certificate chain and its key into a signing key rustls can serve.
pub fn load_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert_file, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error(key_file, format!("no private key: {e}")))?;
    // The process-wide provider (installed at start), the one the server config uses.
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(certified)
}

/// The certificate new handshakes get; swapped when the files change.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The rustls config of `settings` and its resolver (for [`watch`]).
pub fn server_config(
    settings: &TlsSettings,
) -> Result<(rustls::ServerConfig, Arc<CertResolver>), TlsError> {
    let first = load_pair(&settings.cert_file, &settings.key_file)?;
    let resolver = Arc::new(CertResolver {
        current: ArcSwap::from_pointee(first),
    });
    let builder = rustls::ServerConfig::builder();
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let file_error = |message: String| TlsError::File {
                path: path.display().to_string(),
                message,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| file_error(e.to_string()))?
            {
                roots
                    .add(cert.map_err(|e| file_error(e.to_string()))?)
                    .map_err(|e| file_error(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(file_error("holds no CA certificate".into()));
            }
            // Clients without a certificate still connect; the admin API refuses them.
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| file_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, resolver))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Polls the files and swaps the certificate when they change (a thread for the life of the
/// process). `reloaded` counts outcomes.
pub fn watch(
    settings: TlsSettings,
    resolver: Arc<CertResolver>,
    reloads: prometheus::IntCounterVec,
) -> std::io::Result<()> {
    let every = Duration::from_millis(settings.reload_interval_ms.max(50));
    std::thread::Builder::new()
        .name("tls-reload".into())
        .spawn(move || {
            let stamp = || (modified(&settings.cert_file), modified(&settings.key_file));
            let mut loaded = stamp();
            let mut failed = None;
            loop {
                std::thread::sleep(every);
                let now = stamp();
                if now == loaded {
                    continue;
                }
                match load_pair(&settings.cert_file, &settings.key_file) {
                    Ok(pair) => {
                        resolver.current.store(Arc::new(pair));
                        loaded = now;
                        failed = None;
                        reloads
                            .with_label_values(&[Outcome::Success.as_str()])
                            .inc();
                        tracing::info!("TLS certificate reloaded");
                    }
                    // Perhaps one file is written and the other not yet: every poll retries,
                    // and each new state of the files is reported once.
                    Err(e) => {
                        if failed != Some(now) {
                            reloads
                                .with_label_values(&[Outcome::Failure.as_str()])
                                .inc();
                            tracing::warn!("TLS certificate not reloaded (the old one stays): {e}");
                            failed = Some(now);
                        }
                    }
                }
            }
        })
        .map(|_| ())
}
