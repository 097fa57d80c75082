//! An OAuth 2 login for a test's smarthost: a private Dovecot auth service whose passdb checks
//! access tokens (`driver = oauth2`) against a token issuer's introspection URL, and that
//! issuer. Postfix asks the Dovecot service over its socket ([`OAuth2Auth::socket`],
//! `smtpd_sasl_type = dovecot`), so the submission server offers `AUTH XOAUTH2` and
//! `OAUTHBEARER` and takes a token only when the issuer calls it active for that user.
//!
//! The issuer is the only stand-in: a thread serving HTTP/1.1 on 127.0.0.1 that answers RFC 7662
//! introspection (`POST token=...`) with `{"active": true, "username": U}` for the tokens it
//! was given and `{"active": false}` for any other, one response per connection, and counts
//! what it was asked ([`OAuth2Auth::introspections`]; never the token itself).
//!
//! Facts this relies on (Dovecot 2.3.19.1, Debian 12, measured here): an instance with
//! `protocols =` runs only its auth service (`dovecot -c CONF -F`); the passdb's `mechanisms =
//! xoauth2 oauthbearer` skips it for any other mechanism ("mechanism filtered"); with
//! `introspection_mode = post` Dovecot posts `token=<token>` and compares the reply's
//! `username` with the login's user (`auth_username_format = %n`); an inactive token fails the
//! login. Dropping the value stops the master by its PID (SIGTERM, then its children by PID)
//! and the issuer's thread.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::process::ChildGuard;

/// How long the Dovecot master may take to exit after SIGTERM (measured: about 1 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A running token issuer and the Dovecot auth service that asks it.
pub struct OAuth2Auth {
    root: PathBuf,
    issuer: Option<Issuer>,
    master: Option<ChildGuard>,
    dir: Option<tempfile::TempDir>,
}

impl OAuth2Auth {
    /// Starts both: each `(token, user)` is an active token of that user.
    pub fn start(tokens: &[(&str, &str)]) -> Self {
        let dir = crate::test_dir("oauth2");
        let mut auth = Self {
            root: dir.path().to_path_buf(),
            issuer: None,
            master: None,
            dir: Some(dir),
        };
        if let Err(e) = auth.start_both(tokens) {
            panic!("starting the OAuth 2 login failed: {e}\n{}", auth.log());
        }
        auth
    }

    /// The Dovecot auth socket for Postfix's `smtpd_sasl_path`.
    pub fn socket(&self) -> PathBuf {
        self.root.join("auth-client")
    }

    /// Dovecot's log and what the issuer was asked, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "dovecot log:\n{}\nintrospections (known, unknown): {:?}",
            crate::read_for_diagnostics(&self.root.join("dovecot.log")),
            self.introspections()
        )
    }

    /// How many introspection requests asked about a token the issuer knows, and about one it
    /// does not.
    pub fn introspections(&self) -> (usize, usize) {
        self.issuer.as_ref().map_or((0, 0), |i| {
            *i.asked.lock().unwrap_or_else(|p| p.into_inner())
        })
    }

    fn start_both(&mut self, tokens: &[(&str, &str)]) -> Result<(), String> {
        let issuer = Issuer::start(tokens)?;
        let port = issuer.port;
        self.issuer = Some(issuer);

        let root = self.root.display().to_string();
        for d in ["run", "state"] {
            fs::create_dir_all(self.root.join(d)).map_err(|e| format!("creating {d}: {e}"))?;
        }
        fs::write(
            self.root.join("oauth2.conf.ext"),
            format!(
                "introspection_mode = post\nintrospection_url = http://127.0.0.1:{port}/introspect\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
            ),
        )
        .map_err(|e| format!("oauth2.conf.ext: {e}"))?;
        let instance = self
            .root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        fs::write(
            self.root.join("dovecot.conf"),
            format!(
                "# An OAuth 2 login for one test's smarthost, written by mailcall-e2e (tests/oauth2.rs).
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols =
ssl = no
auth_mechanisms = xoauth2 oauthbearer
auth_username_format = %n
auth_verbose = yes
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={root}/home
}}
service auth {{
  unix_listener auth-client {{
    path = {root}/auth-client
    mode = 0666
  }}
}}
"
            ),
        )
        .map_err(|e| format!("dovecot.conf: {e}"))?;
        let child = Command::new("dovecot")
            .arg("-c")
            .arg(self.root.join("dovecot.conf"))
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run dovecot: {e}"))?;
        let mut master = ChildGuard::new("dovecot (auth)", child);
        let socket = self.socket();
        let up = crate::poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
            if let Some(status) = master.exited() {
                return Some(Err(format!("dovecot exited at start ({status})")));
            }
            std::os::unix::net::UnixStream::connect(&socket)
                .is_ok()
                .then_some(Ok(()))
        });
        self.master = Some(master);
        up.unwrap_or_else(|| {
            Err(format!(
                "{} does not answer 10 s after start",
                socket.display()
            ))
        })
    }
}

impl Drop for OAuth2Auth {
    fn drop(&mut self) {
        if let Some(mut master) = self.master.take() {
            let pid = master.pid();
            let children = crate::dovecot::children_of(pid);
            if master.exited().is_none() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
                let _ =
                    crate::poll_until(STOP_TIMEOUT, Duration::from_millis(10), || master.exited());
            }
            drop(master);
            for child in children {
                if crate::dovecot::same_process_alive(child) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &child.pid.to_string()])
                        .status();
                }
            }
        }
        if let Some(issuer) = self.issuer.take() {
            issuer.stop();
        }
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "OAuth 2 login");
        }
    }
}

/// The token issuer: a thread answering introspection requests on a loopback port.
struct Issuer {
    port: u16,
    /// (known, unknown) tokens asked about.
    asked: Arc<Mutex<(usize, usize)>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Issuer {
    fn start(tokens: &[(&str, &str)]) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding the issuer: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("the issuer's port: {e}"))?
            .port();
        let tokens: HashMap<String, String> = tokens
            .iter()
            .map(|(t, u)| (t.to_string(), u.to_string()))
            .collect();
        let asked = Arc::new(Mutex::new((0, 0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (counts, stopping) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let user = introspect(conn, &tokens);
                let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
                if user == Some(true) {
                    c.0 += 1;
                } else if user == Some(false) {
                    c.1 += 1;
                }
            }
        });
        Ok(Self {
            port,
            asked,
            stop,
            thread,
        })
    }

    /// Ends the thread: the flag, then a connection to wake its `accept`.
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.join();
    }
}

/// Answers one request on `conn`; `Some(known)` when it asked about a token.
fn introspect(conn: TcpStream, tokens: &HashMap<String, String>) -> Option<bool> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body);
    let token = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .map(form_decode)
        .unwrap_or_default();
    let user = tokens.get(&token);
    let reply = match user {
        Some(user) => serde_json::json!({ "active": true, "username": user }),
        None => serde_json::json!({ "active": false }),
    }
    .to_string();
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    Some(user.is_some())
}

/// `application/x-www-form-urlencoded` to text: `+` is a space, `%XX` a byte.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
