//! The listener's TLS (STARTTLS) setup: a user-provided certificate and key, or a self-signed pair
//! generated once with rcgen and kept in a directory, turned into a rustls `ServerConfig`.
//!
//! rustls speaks only TLS 1.2 and 1.3, so TLS 1.0/1.1 are never offered. The ring provider is
//! named explicitly, so no process-wide default provider is needed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::fsutil::{create_private_dir, write_atomic};

/// File name of the generated certificate inside the caller's directory.
pub const SELF_SIGNED_CERT: &str = "listener-cert.pem";
/// File name of the generated private key (mode 0600) inside the caller's directory.
pub const SELF_SIGNED_KEY: &str = "listener-key.pem";

/// Setting up the listener's TLS failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or holds no usable PEM item.
    #[error(
        "cannot use {what} {path}: {reason}. Check the path and that it holds a PEM {what} \
         (-----BEGIN ...-----), or leave the certificate settings empty to use a generated \
         self-signed certificate"
    )]
    Pem {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it (unreadable, or no usable PEM item).
        reason: String,
    },
    /// rustls refused the pair (key does not match the certificate, unsupported key type).
    #[error(
        "the TLS certificate and key cannot be used together: {0}. Check that the key belongs \
         to the certificate (an RSA, ECDSA or Ed25519 key)"
    )]
    Config(#[from] rustls::Error),
    /// Generating the self-signed certificate failed.
    #[error(
        "cannot generate a self-signed certificate: {0}; configure a certificate and key instead"
    )]
    Generate(#[from] rcgen::Error),
    /// Reading or writing the generated certificate's directory failed.
    #[error(
        "cannot keep the self-signed certificate in {dir}: {source}. Check that the directory \
         is writable by this user"
    )]
    Store {
        /// The directory.
        dir: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
}

/// A server config from a user-provided certificate chain and private key, both PEM files.
pub fn server_config_from_pem(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        what: "private key",
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    server_config(chain, key)
}

/// A server config with the self-signed certificate kept in `dir` for `hostname`, generated on
/// first use (key written 0600, directory 0700). Returns the config and the certificate's path
/// (what a delivering client could pin).
pub fn self_signed(dir: &Path, hostname: &str) -> Result<(Arc<ServerConfig>, PathBuf), TlsError> {
    let cert_path = dir.join(SELF_SIGNED_CERT);
    let key_path = dir.join(SELF_SIGNED_KEY);
    if !(cert_path.is_file() && key_path.is_file()) {
        generate(dir, hostname, &cert_path, &key_path)?;
    }
    let config = server_config_from_pem(&cert_path, &key_path)?;
    Ok((config, cert_path))
}

fn generate(dir: &Path, hostname: &str, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let store = |source| TlsError::Store {
        dir: dir.to_path_buf(),
        source,
    };
    let mut names = vec![hostname.to_owned()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let certified = rcgen::generate_simple_self_signed(names)?;
    create_private_dir(dir).map_err(store)?;
    // Key first, each file written under a temporary name and renamed: a crash never leaves a
    // certificate whose key is missing or half-written.
    write_atomic(
        key_path,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )
    .map_err(store)?;
    write_atomic(cert_path, certified.cert.pem().as_bytes(), 0o600).map_err(store)?;
    Ok(())
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |reason: String| TlsError::Pem {
        what: "certificate",
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err("no certificate in the file".into()));
    }
    Ok(chain)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let keep = dir.path().join("tls");
        let (_, cert) = self_signed(&keep, "mx.test").unwrap();
        assert_eq!(cert, keep.join(SELF_SIGNED_CERT));
        let first = std::fs::read(&cert).unwrap();
        let key = std::fs::read(keep.join(SELF_SIGNED_KEY)).unwrap();
        assert!(String::from_utf8_lossy(&first).starts_with("-----BEGIN CERTIFICATE-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&keep.join(SELF_SIGNED_KEY)), 0o600);
            assert_eq!(mode(&keep), 0o700);
        }
        // Second start: the same pair, not a new one.
        self_signed(&keep, "mx.test").unwrap();
        assert_eq!(std::fs::read(&cert).unwrap(), first);
        assert_eq!(std::fs::read(keep.join(SELF_SIGNED_KEY)).unwrap(), key);
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(&keep).unwrap().count(), 2);
        // A lone certificate (its key lost) is replaced by a fresh pair.
        std::fs::remove_file(keep.join(SELF_SIGNED_KEY)).unwrap();
        self_signed(&keep, "mx.test").unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first);
    }

    #[test]
    fn user_files_are_loaded_and_bad_ones_explained() {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert) = self_signed(dir.path(), "mx.test").unwrap();
        let key = dir.path().join(SELF_SIGNED_KEY);
        server_config_from_pem(&cert, &key).unwrap();

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").unwrap();
        let err = server_config_from_pem(&junk, &key).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let err = server_config_from_pem(&cert, &junk).unwrap_err();
        assert!(
            matches!(
                err,
                TlsError::Pem {
                    what: "private key",
                    ..
                }
            ),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = server_config_from_pem(&missing, &key).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");

        // A key that belongs to another certificate.
        let other = dir.path().join("other");
        self_signed(&other, "mx.test").unwrap();
        let err = server_config_from_pem(&cert, &other.join(SELF_SIGNED_KEY)).unwrap_err();
        assert!(matches!(err, TlsError::Config(_)), "{err}");
    }
}
