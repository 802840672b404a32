//! The agent's TLS: trust only the configured CA, present the host certificate, ALPN `truce/1`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use truce_common::wire::ALPN;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read PEM from {path}")]
    Pem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("CA certificate {path} was rejected")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("failed to build the TLS client configuration")]
    Config {
        #[source]
        source: rustls::Error,
    },
    #[error("TLS configuration is not usable for QUIC")]
    Quic {
        #[source]
        source: quinn::crypto::rustls::NoInitialCipherSuite,
    },
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

pub fn client_crypto(ca: &Path, cert: &Path, key: &Path) -> Result<quinn::crypto::rustls::QuicClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|source| TlsError::BadCa { path: ca.to_path_buf(), source })?;
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Pem { path: key.to_path_buf(), source })?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config { source })?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(cert)?, key)
        .map_err(|source| TlsError::Config { source })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|source| TlsError::Quic { source })
}
