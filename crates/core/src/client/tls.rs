//! TLS towards the ISP: the system's trusted roots plus the account's own CA file, certificate
//! and name always verified (there is no switch to turn that off), TLS 1.2 and 1.3 only.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::IspError;

/// The system's roots, read once per process (a few hundred files on some systems).
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!("reading the system's CA certificates: {e}");
        }
        found.certs
    })
}

/// The certificates a connection to an ISP trusts: the system's roots and, when given, the
/// certificates in `ca_file` (shared with the smarthost leg, which hands them to lettre).
pub fn trusted_roots(ca_file: Option<&Path>) -> Result<Vec<CertificateDer<'static>>, IspError> {
    let mut roots = system_roots().to_vec();
    if let Some(path) = ca_file {
        let ca_error = |reason: String| IspError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        // A file with no certificate in it would silently trust nothing extra.
        if certs.is_empty() {
            return Err(ca_error(
                "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        // Each must be usable as a trust anchor; a bad one is named here, not at connect time.
        for cert in &certs {
            RootCertStore::empty()
                .add(cert.clone())
                .map_err(|e| ca_error(format!("a certificate in it cannot be used: {e}")))?;
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// A client config trusting the system's roots and, when given, the certificates in `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, IspError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(trusted_roots(ca_file)?);
    tracing::trace!("{added} CA certificate(s) trusted");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| IspError::Tls {
            host: String::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name the certificate must carry: a DNS name, or an IP address for a literal host.
pub fn server_name(host: &str) -> Result<ServerName<'static>, IspError> {
    ServerName::try_from(host.to_owned()).map_err(|e| IspError::Tls {
        host: host.to_owned(),
        reason: format!("{host:?} cannot be checked against a certificate: {e}"),
    })
}

/// What a failed handshake means for the user: a certificate problem, or another TLS failure.
/// tokio-rustls hands rustls' error inside an `io::Error`; it is looked at by type, not by text.
pub fn handshake_error(host: &str, e: &std::io::Error) -> IspError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(why @ rustls::Error::InvalidCertificate(_)) => IspError::Certificate {
            host: host.to_owned(),
            reason: why.to_string(),
        },
        Some(other) => IspError::Tls {
            host: host.to_owned(),
            reason: other.to_string(),
        },
        None => IspError::Tls {
            host: host.to_owned(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let err = client_config(Some(&junk)).unwrap_err();
        assert!(matches!(err, IspError::CaFile { .. }), "{err:?}");
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let missing = dir.path().join("missing.pem");
        let err = client_config(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        assert!(client_config(None).is_ok());
    }

    #[test]
    fn certificate_errors_are_told_apart_by_type() {
        let cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            handshake_error("isp.test", &cert),
            IspError::Certificate { .. }
        ));
        let other = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::General("x".into()),
        );
        assert!(matches!(
            handshake_error("isp.test", &other),
            IspError::Tls { .. }
        ));
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("mail.example.net").is_ok());
        assert!(server_name("bad name").is_err());
    }
}
