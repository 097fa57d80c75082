//! An OAuth 2 login for a test's smarthost: a private Dovecot auth service whose passdb checks
//! access tokens (`driver = oauth2`) against a token issuer's introspection URL, and that
//! issuer. Postfix asks the Dovecot service over its socket ([`OAuth2Auth::socket`],
//! `smtpd_sasl_type = dovecot`), so the submission server offers `AUTH XOAUTH2` and
//! `OAUTHBEARER` and takes a token only when the issuer calls it active for that user.
//!
//! The issuer is the only stand-in: a dozen lines of Python `http.server` on 127.0.0.1 that
//! answer RFC 7662 introspection (`POST token=...`) with `{"active": true, "username": U}` for
//! the tokens it was given and `{"active": false}` for any other, writing one line per request
//! (`introspect known` / `introspect unknown`, never the token) to `issuer.log`.
//!
//! Facts this relies on (Dovecot 2.3.19.1, Debian 12, measured here): an instance with
//! `protocols =` runs only its auth service (`dovecot -c CONF -F`); the passdb's `mechanisms =
//! xoauth2 oauthbearer` skips it for any other mechanism ("mechanism filtered"); with
//! `introspection_mode = post` Dovecot posts `token=<token>` and compares the reply's
//! `username` with the login's user (`auth_username_format = %n`); an inactive token fails the
//! login. Dropping the value stops the master by its PID (SIGTERM, then its children by PID)
//! and the issuer by its PID.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::ChildGuard;

/// How long the Dovecot master may take to exit after SIGTERM (measured: about 1 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

const ISSUER: &str = r#"import http.server, json, sys, urllib.parse
TOKENS = json.loads(sys.argv[1])
LOG = open(sys.argv[2], "a", buffering=1)
class Introspect(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        token = (urllib.parse.parse_qs(body).get("token") or [""])[0]
        user = TOKENS.get(token)
        LOG.write("introspect %s\n" % ("known" if user else "unknown"))
        reply = {"active": True, "username": user} if user else {"active": False}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Introspect)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// A running token issuer and the Dovecot auth service that asks it.
pub struct OAuth2Auth {
    root: PathBuf,
    issuer: Option<ChildGuard>,
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

    /// Dovecot's log and the issuer's, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "dovecot log:\n{}\nissuer log:\n{}",
            crate::read_for_diagnostics(&self.root.join("dovecot.log")),
            self.issuer_log()
        )
    }

    /// The issuer's log: `introspect known` or `introspect unknown`, one line per request.
    pub fn issuer_log(&self) -> String {
        crate::read_for_diagnostics(&self.root.join("issuer.log"))
    }

    fn start_both(&mut self, tokens: &[(&str, &str)]) -> Result<(), String> {
        let script = self.root.join("issuer.py");
        fs::write(&script, ISSUER).map_err(|e| format!("issuer.py: {e}"))?;
        let map: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .map(|(token, user)| (token.to_string(), serde_json::Value::from(*user)))
            .collect();
        let child = Command::new("python3")
            .arg(&script)
            .arg(serde_json::Value::Object(map).to_string())
            .arg(self.root.join("issuer.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run python3 {}: {e}", script.display()))?;
        let mut issuer = ChildGuard::new("token issuer", child);
        let stdout = issuer
            .child_mut()
            .stdout
            .take()
            .ok_or("the issuer has no stdout")?;
        // Its first line is its port, once it listens (it ends at once if it cannot).
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the issuer's port: {e}"))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("the issuer printed {line:?} instead of its port"))?;
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
        self.issuer.take();
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "OAuth 2 login");
        }
    }
}
