//! The peers' TLS: their files, the QUIC configurations both ways (TLS 1.3, mutual, one ALPN
//! per protocol), and the name a peer's certificate gives it.

use super::PeerError;
use crate::server::tls::{load_certs, load_key};
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PeerTls {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PeerTls {
    /// The layout `truce-arbiter certs peer --dir DIR --name NAME` writes.
    pub fn in_dir(dir: &std::path::Path, name: &str) -> PeerTls {
        let (cert, key) = crate::server::certs::peer_paths(dir, name);
        PeerTls { ca_cert: dir.join(crate::server::certs::CA_CERT), cert, key }
    }
}

/// The server and client configurations of a peer endpoint speaking `alpn`.
pub(super) fn quic_configs(tls: &PeerTls, alpn: &[u8]) -> Result<(quinn::ServerConfig, quinn::ClientConfig), PeerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&tls.ca_cert).map_err(|source| PeerError::Tls { source })? {
        roots.add(ca).map_err(|source| PeerError::Rustls { source })?;
    }
    let roots = Arc::new(roots);
    let certs = load_certs(&tls.cert).map_err(|source| PeerError::Tls { source })?;
    let key = load_key(&tls.key).map_err(|source| PeerError::Tls { source })?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| PeerError::Rustls { source: rustls::Error::General(e.to_string()) })?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| PeerError::Rustls { source })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|source| PeerError::Rustls { source })?;
    server.alpn_protocols = vec![alpn.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| PeerError::Rustls { source })?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|source| PeerError::Rustls { source })?;
    client.alpn_protocols = vec![alpn.to_vec()];
    let quic_err = |e: quinn::crypto::rustls::NoInitialCipherSuite| PeerError::Rustls { source: rustls::Error::General(e.to_string()) };
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(10_000))));
    let transport = Arc::new(transport);
    let mut server_cfg = quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(quic_err)?));
    server_cfg.transport_config(transport.clone());
    let mut client_cfg = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(quic_err)?));
    client_cfg.transport_config(transport);
    Ok((server_cfg, client_cfg))
}

/// The peer's name: the single DNS SAN of a certificate that carries both serverAuth and
/// clientAuth (a peer certificate; host certificates carry clientAuth only).
pub fn peer_name(conn: &quinn::Connection) -> Result<String, String> {
    let certs = conn
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no certificate")?;
    let leaf = certs.first().ok_or("no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| e.to_string())?;
    let eku = cert.extended_key_usage().map_err(|e| e.to_string())?.ok_or("no extended key usage")?;
    if !(eku.value.server_auth && eku.value.client_auth) {
        return Err("a peer certificate needs both serverAuth and clientAuth".into());
    }
    crate::server::tls::host_of_certificate(leaf).map(|h| h.0).map_err(|e| e.to_string())
}
