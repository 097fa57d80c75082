//! A test PKI: a fresh CA, a server certificate for 127.0.0.1 it signed (as a rustls server
//! config, for a scripted ISP that speaks TLS), and the CA's PEM in a file (an account's
//! `ca_file`).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A test CA and a server certificate for 127.0.0.1 it signed; the CA's PEM in a file.
pub struct Pki {
    /// The server side: the certificate for 127.0.0.1 and its key.
    pub server: Arc<rustls::ServerConfig>,
    /// The CA's certificate, PEM; removed with the `Pki`.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// A fresh test CA, a server certificate for 127.0.0.1, and the CA's PEM file.
pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    Pki {
        server: Arc::new(server),
        ca_file,
        _dir: dir,
    }
}
