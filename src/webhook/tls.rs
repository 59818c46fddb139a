//! The webhook's TLS: a rustls server configuration from PEM files or from in-memory dev certificates.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Installs ring as the process-wide rustls crypto provider (idempotent; tests call it too).
pub fn install_crypto_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificate or key cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No usable PEM certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    /// No usable PEM private key.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    /// rustls rejected the pair.
    #[error("certificate {cert} and key {key} do not make a TLS configuration: {source}")]
    Rustls {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// Why.
        source: rustls::Error,
    },
}

/// A server configuration (HTTP/1.1 and HTTP/2 via ALPN) from PEM bytes; `cert`/`key` name their source.
pub fn server_config(cert_pem: &[u8], cert: &str, key_pem: &[u8], key: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(key.to_owned()))?;
    let rustls = |source| TlsError::Rustls { cert: cert.to_owned(), key: key.to_owned(), source };
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(rustls)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration from a certificate file and a key file.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read =
        |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source });
    server_config(&read(cert)?, &cert.display().to_string(), &read(key)?, &key.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::certs;

    #[test]
    fn builds_from_issued_pem_with_alpn() {
        let issued = certs::dev().expect("issued");
        let config = server_config(issued.cert_pem.as_bytes(), "c", issued.key_pem.as_bytes(), "k").expect("valid");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }

    #[test]
    fn errors_name_the_file() {
        let issued = certs::dev().expect("issued");
        let err = server_config(b"junk", "/certs/tls.crt", issued.key_pem.as_bytes(), "k").expect_err("no cert");
        assert_eq!(err.to_string(), "/certs/tls.crt: no PEM certificate found");
        let err = server_config(issued.cert_pem.as_bytes(), "c", b"junk", "/certs/tls.key").expect_err("no key");
        assert!(err.to_string().starts_with("/certs/tls.key: no PEM private key"));
        let other = certs::dev().expect("issued");
        let err = server_config(issued.cert_pem.as_bytes(), "a.crt", other.key_pem.as_bytes(), "b.key")
            .expect_err("mismatched pair");
        assert!(err.to_string().starts_with("certificate a.crt and key b.key"), "{err}");
        let err = from_files(Path::new("/nonexistent/tls.crt"), Path::new("/x")).expect_err("missing");
        assert!(err.to_string().starts_with("cannot read /nonexistent/tls.crt"));
    }
}
