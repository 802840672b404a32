//! Certificate tooling: a private CA, the arbiter's server certificate and one client
//! certificate per host. The host's identity is the single DNS subjectAltName of its
//! certificate (the CN carries the same name for humans; the arbiter ignores it).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const ARBITER_CERT: &str = "arbiter.pem";
pub const ARBITER_KEY: &str = "arbiter.key";
/// Host certificates live in `<dir>/hosts/<host>.pem` and `<dir>/hosts/<host>.key`.
pub const HOSTS_DIR: &str = "hosts";
/// Peer certificates (arbiter replicas, federation sites) live in `<dir>/peers/<name>.{pem,key}`.
pub const PEERS_DIR: &str = "peers";

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path} already exists; refusing to overwrite a CA (remove it or pass --force)")]
    Exists { path: PathBuf },
    #[error("invalid host name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("failed to generate {what}")]
    Generate {
        what: &'static str,
        #[source]
        source: rcgen::Error,
    },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable CA certificate or key")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
}

/// Paths written by [`init`] or [`issue`].
#[derive(Debug, Clone)]
pub struct Minted {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Host names are DNS names: they go into a DNS SAN, and the arbiter compares them exactly.
pub fn validate_host_name(name: &str) -> Result<(), CertError> {
    let bad = |reason| Err(CertError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() || name.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every dot-separated label must be 1 to 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return bad("only ASCII letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label may not start or end with '-'");
        }
    }
    Ok(())
}

/// Mint a CA and the arbiter's server certificate in `dir`. The arbiter certificate is
/// valid for `localhost`, `127.0.0.1`, `::1` and every name in `names`.
pub fn init(dir: &Path, names: &[String], force: bool) -> Result<Minted, CertError> {
    let ca_cert = dir.join(CA_CERT);
    if ca_cert.exists() && !force {
        return Err(CertError::Exists { path: ca_cert });
    }
    for n in names {
        if n.parse::<std::net::IpAddr>().is_err() {
            validate_host_name(n)?;
        }
    }
    let ca_key = KeyPair::generate().map_err(|source| CertError::Generate { what: "CA key", source })?;
    let ca = ca_params().self_signed(&ca_key).map_err(|source| CertError::Generate { what: "CA certificate", source })?;
    write_file(&ca_cert, ca.pem().as_bytes(), false)?;
    write_file(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes(), true)?;

    let issuer = Issuer::new(ca_params(), ca_key);
    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    sans.extend(names.iter().cloned());
    let mut params =
        CertificateParams::new(sans).map_err(|source| CertError::Generate { what: "arbiter SANs", source })?;
    params.distinguished_name.push(DnType::CommonName, "truce arbiter");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| CertError::Generate { what: "arbiter key", source })?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| CertError::Generate { what: "arbiter certificate", source })?;
    let minted = Minted { cert: dir.join(ARBITER_CERT), key: dir.join(ARBITER_KEY) };
    write_file(&minted.cert, cert.pem().as_bytes(), false)?;
    write_file(&minted.key, key.serialize_pem().as_bytes(), true)?;
    Ok(minted)
}

/// Mint a client certificate for `host`, signed by the CA in `dir`.
pub fn issue(dir: &Path, host: &str) -> Result<Minted, CertError> {
    validate_host_name(host)?;
    let issuer = load_issuer(dir)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host);
    let dns = host.to_string().try_into().map_err(|source| CertError::Generate { what: "host SAN", source })?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| CertError::Generate { what: "host key", source })?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| CertError::Generate { what: "host certificate", source })?;
    let hosts = dir.join(HOSTS_DIR);
    std::fs::create_dir_all(&hosts).map_err(|source| CertError::Write { path: hosts.clone(), source })?;
    let minted = Minted { cert: hosts.join(format!("{host}.pem")), key: hosts.join(format!("{host}.key")) };
    write_file(&minted.cert, cert.pem().as_bytes(), false)?;
    write_file(&minted.key, key.serialize_pem().as_bytes(), true)?;
    Ok(minted)
}

/// Where [`peer`] writes the certificate and key of `name`.
pub fn peer_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let peers = dir.join(PEERS_DIR);
    (peers.join(format!("{name}.pem")), peers.join(format!("{name}.key")))
}

/// Mint a peer certificate for an arbiter replica or a federation site: one DNS name, both
/// serverAuth and clientAuth (peers dial each other), signed by the CA in `dir`. Peer
/// endpoints refuse certificates without both, so a host certificate cannot join raft or vote.
pub fn peer(dir: &Path, name: &str) -> Result<Minted, CertError> {
    validate_host_name(name)?;
    let issuer = load_issuer(dir)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let dns = name.to_string().try_into().map_err(|source| CertError::Generate { what: "peer SAN", source })?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(|source| CertError::Generate { what: "peer key", source })?;
    let cert = params.signed_by(&key, &issuer).map_err(|source| CertError::Generate { what: "peer certificate", source })?;
    let (cert_path, key_path) = peer_paths(dir, name);
    write_file(&cert_path, cert.pem().as_bytes(), false)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    Ok(Minted { cert: cert_path, key: key_path })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "truce CA");
    params.distinguished_name.push(DnType::OrganizationName, "truce");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, CertError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let cert = read_text(&cert_path)?;
    let key = read_text(&key_path)?;
    let key = KeyPair::from_pem(&key).map_err(|source| CertError::BadCa { path: key_path, source })?;
    Issuer::from_ca_cert_pem(&cert, key).map_err(|source| CertError::BadCa { path: cert_path, source })
}

fn read_text(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Read { path: path.to_path_buf(), source })
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(err)?;
    f.write_all(bytes).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_must_be_dns_names() {
        assert!(validate_host_name("node-a.rack1").is_ok());
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", "é"] {
            assert!(validate_host_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
