//! rustls configuration for the arbiter and the mapping from a verified client certificate
//! to the host it speaks for.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use truce_common::model::HostId;
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
    #[error("failed to build the client certificate verifier")]
    Verifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("failed to build the TLS server configuration")]
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

/// Where the arbiter's TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The layout `truce-arbiter certs init --dir DIR` writes.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        use super::certs::{ARBITER_CERT, ARBITER_KEY, CA_CERT};
        TlsFiles { ca_cert: dir.join(CA_CERT), cert: dir.join(ARBITER_CERT), key: dir.join(ARBITER_KEY) }
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Pem { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Pem { path: path.to_path_buf(), source })
}

/// A QUIC server crypto config that requires a client certificate from our CA, TLS 1.3
/// (QUIC has nothing else) and ALPN `truce/1`.
pub fn server_crypto(files: &TlsFiles) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&files.ca_cert)? {
        roots.add(ca).map_err(|source| TlsError::BadCa { path: files.ca_cert.clone(), source })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|source| TlsError::Verifier { source })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Config { source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)
        .map_err(|source| TlsError::Config { source })?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|source| TlsError::Quic { source })
}

/// Why a connection has no usable host identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the peer presented no certificate")]
    NoCertificate,
    #[error("the peer certificate could not be parsed: {reason}")]
    Unparsable { reason: String },
    #[error("the peer certificate has {count} DNS subjectAltNames; a host certificate has exactly one")]
    DnsNames { count: usize },
}

/// The host a connection speaks for: the single DNS subjectAltName of its (already
/// verified) end-entity certificate. The CN is ignored: SANs are what webpki checks.
pub fn peer_host(conn: &quinn::Connection) -> Result<HostId, IdentityError> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    host_of_certificate(leaf)
}

pub fn host_of_certificate(der: &CertificateDer<'_>) -> Result<HostId, IdentityError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| IdentityError::Unparsable { reason: e.to_string() })?;
    let san = cert.subject_alternative_name().map_err(|e| IdentityError::Unparsable { reason: e.to_string() })?;
    let names: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(*d),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match names.as_slice() {
        [one] => Ok(HostId((*one).to_string())),
        other => Err(IdentityError::DnsNames { count: other.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_identity_is_the_single_dns_san() {
        let dir = std::env::temp_dir().join(format!("truce-tls-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        super::super::certs::init(&dir, &["arbiter.example".to_string()], false).expect("init");
        let minted = super::super::certs::issue(&dir, "node-7").expect("issue");
        let host = host_of_certificate(&load_certs(&minted.cert).expect("load")[0]).expect("identity");
        assert_eq!(host, HostId("node-7".into()));
        // The arbiter's certificate has two DNS names (localhost, arbiter.example): no host identity.
        let arbiter = load_certs(&dir.join(super::super::certs::ARBITER_CERT)).expect("load");
        assert!(matches!(host_of_certificate(&arbiter[0]), Err(IdentityError::DnsNames { count: 2 })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
