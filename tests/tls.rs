//! Test TLS material for the ISPs (Postfix, Exim): a private CA and a server certificate it
//! signs, made with the `openssl` command.
//!
//! rustls refuses a single self-signed `openssl req -x509` certificate (CA:TRUE) as a server
//! certificate, while OpenSSL clients accept it; a test built that way would pass or fail for
//! the wrong reason. So the CA and the server certificate are separate, and the server's is
//! CA:FALSE with serverAuth and SAN IP:127.0.0.1 and DNS:localhost.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_checked;

/// The files [`make_ca_and_server_cert`] writes into its directory.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The CA certificate (PEM) to hand to clients.
    pub ca_pem: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub cert_pem: PathBuf,
    /// The server's private key (PEM, unencrypted, mode 0644 so a dropped-privilege daemon reads it).
    pub key_pem: PathBuf,
}

/// Writes `ca.pem`/`ca.key` (CN `ca_name`) and `server.pem`/`server.key` (CN localhost, SAN
/// IP:127.0.0.1 and DNS:localhost, CA:FALSE, serverAuth), valid for 2 days, into `dir`.
pub fn make_ca_and_server_cert(dir: &Path, ca_name: &str) -> Result<ServerTls, String> {
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_checked(
        Command::new("openssl")
            .current_dir(dir)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
            .args(["-subj", &format!("/CN={ca_name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]),
        None,
    )?;
    run_checked(
        Command::new("openssl")
            .current_dir(dir)
            .arg("req")
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=localhost"]),
        None,
    )?;
    fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .map_err(|e| format!("writing server.ext: {e}"))?;
    run_checked(
        Command::new("openssl")
            .current_dir(dir)
            .args(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem"])
            .args(["-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem"])
            .args(["-days", "2", "-extfile", "server.ext"]),
        None,
    )?;
    // Postfix's smtpd and Exim's receiving processes read the key after dropping root.
    chmod(&dir.join("server.key"), 0o644)?;
    Ok(ServerTls {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server.key"),
    })
}

/// `chmod MODE PATH`, with the path in the error.
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {mode:o} {}: {e}", path.display()))
}
