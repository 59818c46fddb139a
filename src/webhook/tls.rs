//! The webhook's TLS: a serving certificate that can be swapped while serving (new handshakes get the new one at
//! once; connections already open keep theirs), an optional client CA that can be swapped the same way, and
//! fixed configurations from PEM files or in-memory dev certificates.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Installs ring as the process-wide rustls crypto provider (idempotent; tests call it too).
pub fn install_crypto_provider() {
    // Err only means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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
        #[source]
        source: std::io::Error,
    },
    /// No usable PEM certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(String),
    /// No usable PEM private key.
    #[error("{0}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(String),
    /// The certificate cannot be read as X.509.
    #[error("{0}: not a valid X.509 certificate")]
    BadCertificate(String),
    /// The certificate has expired.
    #[error("{cert}: expired at {not_after} (seconds since the epoch)")]
    Expired {
        /// Where the certificate came from.
        cert: String,
        /// Its `notAfter`.
        not_after: i64,
    },
    /// The certificate is not valid yet.
    #[error("{cert}: not valid until {not_before} (seconds since the epoch)")]
    NotYetValid {
        /// Where the certificate came from.
        cert: String,
        /// Its `notBefore`.
        not_before: i64,
    },
    /// The chain makes a handshake message larger than Go's TLS accepts.
    #[error("{cert}: the chain makes a {bytes}-byte TLS Certificate message; Go clients (the API server) accept {max}")]
    ChainTooLarge {
        /// Where the certificate came from.
        cert: String,
        /// The message's size.
        bytes: usize,
        /// The most Go accepts.
        max: usize,
    },
    /// rustls rejected the pair (e.g. a key that does not match the certificate).
    #[error("certificate {cert} and key {key} do not make a TLS configuration: {source}")]
    Rustls {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// The largest TLS handshake message every Go release accepts (64 KiB; Go 1.22 and later take certificate messages
/// up to 256 KiB, but API servers built with older Go are still about).
pub(crate) const GO_MAX_HANDSHAKE: usize = 65536;

/// A serving certificate and its key, checked to belong together.
#[derive(Debug, Clone)]
pub struct Pair {
    key: Arc<CertifiedKey>,
    /// Where the certificate came from.
    source: String,
    /// The certificate's `notBefore`, in seconds since the epoch.
    pub not_before: i64,
    /// The certificate's `notAfter`, in seconds since the epoch.
    pub not_after: i64,
    /// The size of the TLS 1.3 Certificate message the chain makes.
    pub message_bytes: usize,
}

impl Pair {
    /// Reads a pair from PEM bytes; `cert`/`key` name their source for errors.
    pub fn from_pem(cert_pem: &[u8], cert: &str, key_pem: &[u8], key: &str) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem).filter_map(Result::ok).collect();
        let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate(cert.to_owned()))?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(leaf).map_err(|_| TlsError::BadCertificate(cert.to_owned()))?;
        let (not_before, not_after) =
            (parsed.validity().not_before.timestamp(), parsed.validity().not_after.timestamp());
        // Handshake header, request context, list length; per certificate its length and (empty) extensions.
        let message_bytes = 4 + 1 + 3 + chain.iter().map(|c| 3 + c.len() + 2).sum::<usize>();
        let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey(key.to_owned()))?;
        let rustls = |source| TlsError::Rustls { cert: cert.to_owned(), key: key.to_owned(), source };
        let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(rustls)?;
        certified.keys_match().map_err(rustls)?;
        Ok(Self { key: Arc::new(certified), source: cert.to_owned(), not_before, not_after, message_bytes })
    }

    /// Why this pair cannot be served at `now` (seconds since the epoch), if it cannot: expired, not valid yet, or
    /// a chain too large for the API server's TLS.
    pub(crate) fn servable(&self, now: i64) -> Result<(), TlsError> {
        let cert = self.source.clone();
        if self.not_after < now {
            return Err(TlsError::Expired { cert, not_after: self.not_after });
        }
        if self.not_before > now {
            return Err(TlsError::NotYetValid { cert, not_before: self.not_before });
        }
        if self.message_bytes > GO_MAX_HANDSHAKE {
            return Err(TlsError::ChainTooLarge { cert, bytes: self.message_bytes, max: GO_MAX_HANDSHAKE });
        }
        Ok(())
    }

    /// Reads a pair from a certificate file and a key file.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
        };
        Self::from_pem(&read(cert)?, &cert.display().to_string(), &read(key)?, &key.display().to_string())
    }
}

/// The serving certificate in force, swapped atomically; handshakes read it without a lock.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<Pair>,
    not_after: AtomicI64,
}

impl CertStore {
    /// A store serving `pair`.
    pub fn new(pair: Pair) -> Self {
        Self { not_after: AtomicI64::new(pair.not_after), current: ArcSwap::from_pointee(pair) }
    }

    /// Serves `pair` from the next handshake on.
    pub fn swap(&self, pair: Pair) {
        self.not_after.store(pair.not_after, Ordering::Release);
        self.current.store(Arc::new(pair));
    }

    /// The served certificate's `notAfter`, in seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Acquire)
    }

    /// Why the served certificate cannot work at `now` (seconds since the epoch), in a few words, if it cannot
    /// (a pair loaded at start is served whatever it is: there is no other; a reload never swaps in such a pair).
    pub(crate) fn problem(&self, now: i64) -> Option<&'static str> {
        match self.current.load().servable(now) {
            Ok(()) => None,
            Err(TlsError::Expired { .. }) => Some("the serving certificate has expired"),
            Err(TlsError::NotYetValid { .. }) => Some("the serving certificate is not valid yet"),
            Err(_) => Some("the serving certificate chain is too large for the API server's TLS"),
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// The CA that client certificates must chain to, swapped atomically (`--client-ca`).
#[derive(Debug)]
pub(crate) struct ClientCa {
    current: ArcSwap<Verifier>,
}

#[derive(Debug)]
struct Verifier(Arc<dyn ClientCertVerifier>);

impl ClientCa {
    /// A verifier for the CA certificates in the PEM file `path`.
    pub(crate) fn from_file(path: &Path) -> Result<Self, TlsError> {
        Ok(Self { current: ArcSwap::from_pointee(Self::verifier(path)?) })
    }

    /// Uses the CA certificates in `path` from the next handshake on.
    pub fn reload(&self, path: &Path) -> Result<(), TlsError> {
        self.current.store(Arc::new(Self::verifier(path)?));
        Ok(())
    }

    fn verifier(path: &Path) -> Result<Verifier, TlsError> {
        let name = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: name.clone(), source })?;
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if added == 0 {
            return Err(TlsError::NoCertificate(name));
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build().map_err(|e| {
                TlsError::Rustls { cert: name.clone(), key: name, source: rustls::Error::General(e.to_string()) }
            })?;
        Ok(Verifier(verifier))
    }
}

impl ClientCertVerifier for ClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints would borrow from a verifier that may be swapped; the API server sends its configured certificate
        // without them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current.load().0.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current.load().0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current.load().0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().0.supported_verify_schemes()
    }
}

/// A server configuration (HTTP/2 and HTTP/1.1 via ALPN) serving whatever `certs` holds, requiring client
/// certificates from `client_ca` when given.
pub(crate) fn reloadable_config(certs: Arc<CertStore>, client_ca: Option<Arc<ClientCa>>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(ca),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A server configuration serving one fixed pair from PEM bytes; `cert`/`key` name their source.
pub fn server_config(cert_pem: &[u8], cert: &str, key_pem: &[u8], key: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let pair = Pair::from_pem(cert_pem, cert, key_pem, key)?;
    Ok(reloadable_config(Arc::new(CertStore::new(pair)), None))
}

/// A server configuration from a certificate file and a key file.
pub fn from_files(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(reloadable_config(Arc::new(CertStore::new(Pair::from_files(cert, key)?)), None))
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

    #[test]
    fn a_store_swaps_and_knows_when_its_certificate_expires() {
        let first = certs::dev().expect("issued");
        let pair = Pair::from_pem(first.cert_pem.as_bytes(), "c", first.key_pem.as_bytes(), "k").expect("pair");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((pair.not_after - now - 30 * 86_400).abs() < 600, "dev certificates last 30 days");
        let store = CertStore::new(pair.clone());
        assert_eq!(store.problem(now), None);
        assert_eq!(store.problem(pair.not_after + 1), Some("the serving certificate has expired"));
        assert_eq!(store.problem(pair.not_before - 1), Some("the serving certificate is not valid yet"));
        let second = certs::issue(&["localhost".to_owned()], 1).expect("issued");
        let pair = Pair::from_pem(second.cert_pem.as_bytes(), "c", second.key_pem.as_bytes(), "k").expect("pair");
        store.swap(pair.clone());
        assert_eq!(store.not_after(), pair.not_after);
    }

    #[test]
    fn a_pair_that_cannot_work_is_named_before_it_is_served() {
        let issued = certs::dev().expect("issued");
        let pair = Pair::from_pem(issued.cert_pem.as_bytes(), "tls.crt", issued.key_pem.as_bytes(), "k").expect("pair");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(pair.servable(now).is_ok());
        let expired = pair.servable(pair.not_after + 60).expect_err("expired");
        assert!(expired.to_string().starts_with("tls.crt: expired at "), "{expired}");
        assert!(matches!(pair.servable(pair.not_before - 60), Err(TlsError::NotYetValid { .. })));
        // A chain padded with copies of the leaf until its handshake message is over what Go accepts.
        let copies = GO_MAX_HANDSHAKE / issued.cert_pem.len() * 2;
        let padded = issued.cert_pem.repeat(copies);
        let big = Pair::from_pem(padded.as_bytes(), "big.crt", issued.key_pem.as_bytes(), "k").expect("a pair still");
        let err = big.servable(now).expect_err("too large");
        assert!(err.to_string().starts_with("big.crt: the chain makes a "), "{err}");
        assert!(err.to_string().ends_with("Go clients (the API server) accept 65536"), "{err}");
    }
}
