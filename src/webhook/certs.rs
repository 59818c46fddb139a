//! Certificates: a CA and a serving certificate for the webhook Service (what `otel-injector certs` writes), and
//! the in-memory pair `--dev-certs` uses.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A CA and a serving certificate it signed, all PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA certificate: the MutatingWebhookConfiguration's `caBundle`.
    pub ca_pem: String,
    /// The CA private key.
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

/// Certificate generation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The DNS names the API server uses to reach a webhook Service.
pub(crate) fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![format!("{service}.{namespace}.svc"), format!("{service}.{namespace}.svc.cluster.local")]
}

/// Issues a fresh CA and a serving certificate for `names` (DNS names or IP addresses), valid for `days`.
pub fn issue(names: &[String], days: u32) -> Result<Issued, CertError> {
    let now = OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams, days: u32| {
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days));
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = name("otel-injector CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca, days.saturating_mul(2));
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name = name(names.first().map_or("otel-injector", String::as_str));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut leaf, days);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Issued { ca_pem, ca_key_pem, cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The in-memory pair of `--dev-certs`: valid for `localhost`, `127.0.0.1` and `::1`.
pub fn dev() -> Result<Issued, CertError> {
    issue(&["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()], 30)
}

/// The `caBundle` value: the CA PEM in standard base64.
pub fn ca_bundle(issued: &Issued) -> String {
    base64_simd::STANDARD.encode_to_string(issued.ca_pem.as_bytes())
}

/// Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` (the names cert-manager and Secrets use) into `dir`.
pub fn write(issued: &Issued, dir: &Path) -> Result<Vec<PathBuf>, CertError> {
    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, CertError> {
        let path = dir.join(name);
        let wrap = |source| CertError::Write { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(wrap)?;
        std::fs::write(&path, text).map_err(wrap)?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(wrap)?;
        }
        Ok(path)
    };
    Ok(vec![
        write("ca.crt", &issued.ca_pem, false)?,
        write("ca.key", &issued.ca_key_pem, true)?,
        write("tls.crt", &issued.cert_pem, false)?,
        write("tls.key", &issued.key_pem, true)?,
    ])
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_dns_names() {
        assert_eq!(
            service_names("otel-injector", "observability"),
            ["otel-injector.observability.svc", "otel-injector.observability.svc.cluster.local"]
        );
    }

    #[test]
    fn issues_pem_files_and_a_base64_bundle() {
        let issued = issue(&service_names("hook", "ns"), 365).expect("issued");
        assert!(issued.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(ca_bundle(&issued)).expect("base64");
        assert_eq!(decoded, issued.ca_pem.as_bytes());

        let dir = tempfile::tempdir().expect("tempdir");
        let files = write(&issued, dir.path()).expect("written");
        assert_eq!(files.len(), 4);
        assert_eq!(std::fs::read_to_string(dir.path().join("tls.crt")).expect("read"), issued.cert_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls.key")).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
